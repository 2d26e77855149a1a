"""What one Twilio SDK call costs the calling thread, against the local fake Twilio.

    .venv/bin/python bench/twilio_cost.py [--n 1000]

Prints one JSON line per case (refused with a 500, as in W2; accepted): the CPU time of the calling
thread per call (time.thread_time, so the fake server's own thread is not counted) and the wall time.
W2 makes 3,000 such calls, all in one worker process.
"""

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402

WARM_UP = 100


def measure(send, n):
    for _ in range(WARM_UP):
        send()
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(n):
        send()
    return (time.thread_time() - cpu) * 1e6 / n, (time.perf_counter() - wall) * 1e6 / n


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    harness.setup_django()
    from django.conf import settings
    from twilio.base.exceptions import TwilioRestException

    from notifications.twilio_backends import TwilioBackend
    from tests.fakes.twilio_server import FakeTwilio

    twilio = FakeTwilio().start()
    settings.TWILIO_API_BASE_URL = twilio.url

    def send():
        with contextlib.suppress(TwilioRestException):
            TwilioBackend().send({"to": "+33612345678", "from_": "+15005550006", "body": "Bench"})

    try:
        for case in ("refused", "accepted"):
            twilio.reset()
            if case == "refused":
                twilio.fail_always(500, 20500)
            cpu_us, wall_us = measure(send, args.n)
            figures = {"cpu_us_per_call": round(cpu_us), "wall_us_per_call": round(wall_us)}
            print(json.dumps({"case": case, "n": args.n, **figures}), flush=True)
    finally:
        twilio.stop()


if __name__ == "__main__":
    main()

"""W1's drain against W1-bare's, side by side, without the rest of W1.

    .venv/bin/python bench/drain_pairs.py [--n 10000] [--pairs 3]

Loads N in-app deliveries and their messages in bulk (no service calls, so a round takes seconds),
drains them with the project's worker, then does the same with the bare actor, and repeats. On a
machine whose speed drifts from one minute to the next, each pair is a fairer comparison than two
separate runs. Prints messages a second for each pair and the medians.
"""

import argparse
import statistics
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402

ENQUEUE_BATCH = 1000


def load_deliveries(user, n):
    from notifications.models import Delivery
    from notifications.tasks import ACTORS

    deliveries = Delivery.objects.bulk_create(
        Delivery(channel="in_app", template="in_app", recipient=str(user.pk), message_id=str(uuid.uuid4()))
        for _ in range(n)
    )
    return [
        ACTORS["in_app"]
        .message(
            channel="in_app",
            recipient=str(user.pk),
            template="in_app",
            context={"title": f"Bench notification {i}", "body": "", "link": ""},
            language="en",
            delivery_id=delivery.pk,
        )
        .copy(message_id=delivery.message_id)
        for i, delivery in enumerate(deliveries)
    ]


def load_bare(user, n):
    from bench.bare_actors import insert_in_app

    return [insert_in_app.message(user.pk, f"Bare notification {i}") for i in range(n)]


def drain(kind, n):
    """Messages a second for one drain of n messages by the project's worker or the bare one."""
    import dramatiq

    from notifications.models import Delivery, InAppNotification

    harness.empty_tables(Delivery, InAppNotification)
    harness.flush_redis()
    user = harness.bench_user()
    messages = (load_deliveries if kind == "W1" else load_bare)(user, n)
    broker = dramatiq.get_broker()
    for start in range(0, n, ENQUEUE_BATCH):
        broker.enqueue_many(messages[start : start + ENQUEUE_BATCH])
    if kind == "W1":
        command, env = harness.RUNDRAMATIQ, harness.bench_env()
    else:
        command, env = harness.BARE_DRAMATIQ, harness.bench_env(PYTHONPATH=harness.ROOT)
    with harness.Worker(command, env, f"drain-pairs-{kind}.log") as worker:
        started = harness.wait_for_count(InAppNotification.objects.count, 1, worker)
        done = harness.wait_for_count(InAppNotification.objects.count, n, worker)
    return n / (done - started)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    harness.prepare_database(harness.DATABASE)
    harness.setup_django()
    rates = {"W1": [], "W1-bare": []}
    try:
        for pair in range(1, args.pairs + 1):
            for kind, measured in rates.items():
                measured.append(drain(kind, args.n))
            w1, bare = rates["W1"][-1], rates["W1-bare"][-1]
            print(f"pair {pair}: W1 {w1:.0f}/s, W1-bare {bare:.0f}/s", flush=True)
    finally:
        harness.Worker.stop_all()
    ahead = sum(w1 >= bare for w1, bare in zip(rates["W1"], rates["W1-bare"], strict=True))
    print(
        f"medians: W1 {statistics.median(rates['W1']):.0f}/s, "
        f"W1-bare {statistics.median(rates['W1-bare']):.0f}/s; W1 ahead in {ahead} of {args.pairs} pairs"
    )


if __name__ == "__main__":
    main()

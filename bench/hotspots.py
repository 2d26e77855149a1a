"""Where the time goes: py-spy samples of the enqueue path, the worker drain and a bulk retry.

    .venv/bin/pip install py-spy        # a profiler for this machine only, not a requirement
    .venv/bin/python bench/hotspots.py enqueue [--n 3000]
    .venv/bin/python bench/hotspots.py drain [--n 10000]
    .venv/bin/python bench/hotspots.py requeue [--n 10000]
    .venv/bin/python bench/hotspots.py storm [--n 1000]
    .venv/bin/python bench/hotspots.py storm-bare [--n 1000]

Samples wall-clock time (waiting on PostgreSQL or Redis counts; ``--gil``: only the GIL holder), writes
the raw stacks to bench/results/<name>.txt and prints the functions with the largest share of the
samples that go through the work being profiled: inclusive (the function or anything it calls) and
self.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import harness, workloads  # noqa: E402

PY_SPY = Path(sys.executable).parent / "py-spy"
SAMPLE_RATE = 1000
FRAME = re.compile(r"^(?P<name>.*) \((?P<file>.*?)(?::\d+)?\)$")
#: Only the samples of threads doing the work: the bench loop, or a worker thread running a message.
WORK_FRAMES = {
    "enqueue": "enqueue_in_app",
    "drain": "WorkerThread.process_message",
    "requeue": "retry_jobs",
    # Every worker thread, busy or waiting: how much of the storm the threads spend idle.
    "storm": "WorkerThread.run",
    # Every thread of the bare worker: Retries' delayed messages go through the consumer threads.
    "storm-bare": "Thread._bootstrap_inner",
}
TOP = 30


class Sampler:
    """py-spy attached to a process until stopped; leaves its raw stacks in a file."""

    #: "--idle": every thread, waiting or not (wall-clock time); "--gil": only the thread holding the
    #: GIL (where the process's Python CPU goes; with 8 threads, waiting for the GIL looks like work).
    mode = "--idle"

    def __init__(self, pid, name, subprocesses=False):
        self.output = harness.RESULTS / f"{name}.txt"
        command = [str(PY_SPY), "record", "--format", "raw", "--rate", str(SAMPLE_RATE)]
        command.append(self.mode)
        command += ["--pid", str(pid), "--output", str(self.output), "--nonblocking"]
        if subprocesses:
            command.append("--subprocesses")
        harness.RESULTS.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # py-spy attaches

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)
        return self.output


def profile_enqueue(n):
    from notifications.models import Delivery, InAppNotification
    from notifications.services import NotificationsService

    harness.empty_tables(Delivery, InAppNotification)
    harness.flush_redis()
    service, user = NotificationsService(), harness.bench_user()
    workloads.enqueue_in_app(service, user, 200)  # warm up
    sampler = Sampler(os.getpid(), "profile-enqueue")
    try:
        elapsed, _ = workloads.enqueue_in_app(service, user, n)
    finally:
        output = sampler.stop()
    print(f"enqueue: {n} calls in {elapsed:.2f} s ({elapsed / n * 1000:.2f} ms a call)")
    return output


def profile_drain(n):
    from notifications.models import Delivery, InAppNotification
    from notifications.services import NotificationsService

    harness.empty_tables(Delivery, InAppNotification)
    harness.flush_redis()
    workloads.enqueue_in_app(NotificationsService(), harness.bench_user(), n)
    with harness.Worker(harness.RUNDRAMATIQ, harness.bench_env(), "profile-drain-worker.log") as worker:
        output, done, elapsed = sample_until(worker, "profile-drain", InAppNotification.objects.count, n)
    print(f"drain: {done} messages in {elapsed:.2f} s while sampled ({done / elapsed:.0f}/s)")
    return output


def sample_until(worker, name, count, n):
    """Sample the worker from the first ``count()`` until it reaches n: (raw stacks, done while sampled,
    seconds).
    """
    harness.wait_for_count(count, 1, worker)
    sampler = Sampler(worker.process.pid, name, subprocesses=True)
    started, done_before = time.perf_counter(), count()
    try:
        harness.wait_for_count(count, n, worker)
    finally:
        output = sampler.stop()
    return output, n - done_before, time.perf_counter() - started


def profile_requeue(n):
    from failedjobs.models import FailedJob
    from failedjobs.services import retry_jobs

    harness.empty_tables(FailedJob)
    harness.flush_redis()
    workloads.create_failed_jobs(n)
    sampler = Sampler(os.getpid(), "profile-requeue")
    try:
        started = time.perf_counter()
        retry_jobs(FailedJob.objects.all())
        elapsed = time.perf_counter() - started
    finally:
        output = sampler.stop()
    print(f"requeue: {n} failed jobs in {elapsed:.2f} s ({n / elapsed:.0f}/s)")
    return output


def profile_storm(n):
    from failedjobs.models import FailedJob
    from notifications.models import Delivery
    from notifications.services import NotificationsService
    from tests.fakes.twilio_server import FakeTwilio

    harness.empty_tables(Delivery, FailedJob)
    harness.flush_redis()
    service = NotificationsService()
    for i in range(n):
        service.send_sms("+33612345678", text=f"Storm {i}")
    twilio = FakeTwilio().start()
    try:
        twilio.fail_always(500, 20500)
        env = harness.bench_env(
            NOTIFICATIONS_MAX_RETRIES=2,
            NOTIFICATIONS_MIN_BACKOFF_MS=10,
            NOTIFICATIONS_MAX_BACKOFF_MS=50,
            TWILIO_API_BASE_URL=twilio.url,
        )
        with harness.Worker(harness.RUNDRAMATIQ, env, "profile-storm-worker.log") as worker:
            harness.wait_for_count(lambda: twilio.requests_seen, 1, worker)
            sampler = Sampler(worker.process.pid, "profile-storm", subprocesses=True)
            started = time.perf_counter()
            try:
                harness.wait_for_count(FailedJob.objects.count, n, worker)
            finally:
                output = sampler.stop()
            elapsed = time.perf_counter() - started
    finally:
        twilio.stop()
    print(f"storm: {n} messages failed for good {elapsed:.2f} s after the first Twilio request")
    return output


def profile_storm_bare(n):
    from bench.bare_actors import always_fails
    from failedjobs.models import FailedJob

    harness.empty_tables(FailedJob)
    harness.flush_redis()
    for i in range(n):
        always_fails.send(i)
    env = harness.bench_env(PYTHONPATH=harness.ROOT)
    with harness.Worker(harness.BARE_DRAMATIQ, env, "profile-storm-bare-worker.log") as worker:
        output, done, elapsed = sample_until(worker, "profile-storm-bare", FailedJob.objects.count, n)
    print(f"storm-bare: {done} messages failed for good in {elapsed:.2f} s while sampled")
    return output


def read_stacks(path, work_frame):
    """(frames, samples) for each sampled stack that goes through ``work_frame``."""
    stacks = []
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [frame_name(frame) for frame in stack.split(";") if not frame.startswith("process ")]
        if any(frame.startswith(work_frame + " ") for frame in frames):
            stacks.append((frames, int(count)))
    return stacks


def frame_name(frame):
    """``function (file)``, the line number dropped and the path made short."""
    match = FRAME.match(frame)
    if match is None:
        return frame
    path = match["file"].split("site-packages/")[-1].replace(str(ROOT) + "/", "")
    return f"{match['name']} ({path})"


def summarise(stacks):
    total = sum(count for _, count in stacks)
    inclusive, own = Counter(), Counter()
    for frames, count in stacks:
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    return total, inclusive, own


def print_summary(title, stacks):
    total, inclusive, own = summarise(stacks)
    print(f"\n{title}: {total} samples\n\ninclusive (function and what it calls)")
    for frame, count in inclusive.most_common(TOP):
        print(f"  {count / total:6.1%}  {frame}")
    print("\nself (the function's own code, or the wait it is blocked in)")
    for frame, count in own.most_common(TOP):
        print(f"  {count / total:6.1%}  {frame}")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", choices=sorted(WORK_FRAMES))
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL")
    args = parser.parse_args()
    Sampler.mode = "--gil" if args.gil else "--idle"
    if not PY_SPY.exists():
        sys.exit(f"{PY_SPY} is missing: .venv/bin/pip install py-spy")
    harness.prepare_database(harness.DATABASE)
    harness.setup_django()
    profile = {
        "enqueue": profile_enqueue,
        "drain": profile_drain,
        "requeue": profile_requeue,
        "storm": profile_storm,
        "storm-bare": profile_storm_bare,
    }
    default_n = {"enqueue": 3000, "drain": 10_000, "requeue": 10_000, "storm": 1000, "storm-bare": 1000}
    try:
        output = profile[args.target](args.n or default_n[args.target])
    finally:
        harness.Worker.stop_all()
    print_summary(f"{args.target} ({output})", read_stacks(output, WORK_FRAMES[args.target]))


if __name__ == "__main__":
    main()

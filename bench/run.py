"""Benchmarks of the notification pipeline on real Redis and PostgreSQL.

    .venv/bin/python bench/run.py [--workload W1 W1-bare W1-noop W2 W2-bare W3 W4 W5 W5-hold W7 W8 W8-call
                                   W9-stream W9-drain W9-call W14] [--quick] [--reset] [--repeat N]

Prints one JSON line per measurement, then a table of the figures beside their targets (with
--repeat, the workloads run N times in turn and the table shows the median of each figure). It never
fails on a target; it exits 1 only when a workload could not run. Worker logs go to bench/results/.
"""

import argparse
import json
import signal
import statistics
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import harness, recipients, workloads  # noqa: E402

FULL_SIZES = {
    "W1": 10_000,
    "W1-paced": 1000,
    "W1-bare": 10_000,
    "W1-noop": 10_000,
    "W2": 1000,
    "W2-bare": 1000,
    "W3": (5000, 100_000),
    "W4": 1_000_000,
    "W8": (1_000_000, 10_000),
    "W8-call": 5000,
    "W14": 5000,
    # SMS queued, in-app notifications drained, outage seconds, NOTIFICATIONS_BREAKER_OPEN_S.
    "W5": (1000, 10_000, 60, 30),
    "W5-hold": 3000,
    # SMS in the burst, NOTIFICATIONS_RATE_LIMITS' SMS rate.
    "W7": (2000, 50),
    "W9-stream": (200, 500, 1000),
    "W9-drain": 3000,
    "W9-call": 2000,
}
#: --quick: every N divided by 10.
QUICK_SIZES = {
    "W1": 1000,
    "W1-paced": 100,
    "W1-bare": 1000,
    "W1-noop": 1000,
    "W2": 100,
    "W2-bare": 100,
    "W3": (500, 10_000),
    "W4": 100_000,
    "W8": (100_000, 1000),
    "W8-call": 500,
    "W14": 500,
    "W5": (100, 1000, 20, 5),
    "W5-hold": 300,
    "W7": (200, 50),
    "W9-stream": (20, 50, 100),
    "W9-drain": 1000,
    "W9-call": 200,
}
#: W5 also measures W6 (the recovery after its outage).
WORKLOADS = (
    *("W1", "W1-bare", "W1-noop", "W2", "W2-bare", "W3", "W4"),
    *("W5", "W5-hold", "W7", "W8", "W8-call", "W14"),
    *("W9-stream", "W9-drain", "W9-call"),
)
#: The databases a workload uses, when not only harness.DATABASE. The first database of the first
#: workload run is Django's default connection; the others are reached with harness.using_database.
WORKLOAD_DATABASES = {
    "W4": (harness.DATABASE, harness.ADMIN_DATABASE),
    "W8": (harness.OUTBOX_DATABASE,),
    "W8-call": (harness.OUTBOX_DATABASE,),
}

#: (workload, figure) -> (comparison, target). jobs_per_s of W1 is also compared with W1-bare's, and
#: W8-call's delayed_p99_ms with its p99_ms.
TARGETS = {
    ("W1", "enqueue_p99_ms"): ("<=", 1.0),
    ("W1", "jobs_per_s"): (">=", 4500),
    ("W1", "e2e_p50_ms"): ("<=", 2.0),
    ("W2", "storm_s"): ("<=", 1.0),
    ("W2-bare", "storm_s"): ("<=", 1.0),
    ("W3", "per_s"): (">=", 10_000),
    ("W4", "changelist_ms"): ("<=", 200),
    ("W4", "changelist_filtered_ms"): ("<=", 200),
    ("W4", "search_ms"): ("<=", 200),
    ("W4", "detail_ms"): ("<=", 200),
    ("W8", "dispatch_s"): ("<=", 2.0),
    ("W8", "uses_delivery_due"): ("==", True),
    # The callback view keeps up with one worker's SMS (Twilio posts about two callbacks per SMS).
    ("W14", "callbacks_per_sms_rate"): (">=", 1.0),
    ("W5", "storm_to_alone"): (">=", 0.8),
    ("W5", "storm_to_alone_by_cpu"): (">=", 0.8),
    ("W5", "failed_jobs_in_outage"): ("==", 0),
}


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workload", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--quick", action="store_true", help="a smoke run: every N divided by 10")
    parser.add_argument(
        "--reset", action="store_true", help="rebuild W4's FailedJob rows and W8's Delivery rows"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="run the workloads N times in turn; the table shows medians"
    )
    return parser.parse_args()


def run_workload(name, sizes, reset):
    if name == "W1":
        return workloads.w1(sizes["W1"], sizes["W1-paced"])
    if name == "W1-bare":
        return workloads.w1_bare(sizes["W1-bare"])
    if name == "W1-noop":
        return workloads.w1_noop(sizes["W1-noop"])
    if name == "W2":
        return workloads.w2(sizes["W2"])
    if name == "W2-bare":
        return workloads.w2_bare(sizes["W2-bare"])
    if name == "W3":
        return workloads.w3(sizes["W3"])
    if name == "W5":
        return workloads.w5_w6(*sizes["W5"])
    if name == "W5-hold":
        return workloads.w5_hold(sizes["W5-hold"])
    if name == "W7":
        return workloads.w7(*sizes["W7"])
    if name == "W8":
        return workloads.w8(*sizes["W8"], reset=reset)
    if name == "W8-call":
        return workloads.w8_call(sizes["W8-call"], *sizes["W8"], reset=reset)
    if name == "W14":
        return workloads.w14(sizes["W14"])
    if name == "W9-stream":
        return recipients.w9_stream(sizes["W9-stream"])
    if name == "W9-drain":
        return recipients.w9_drain(sizes["W9-drain"])
    if name == "W9-call":
        return recipients.w9_call(sizes["W9-call"])
    return workloads.w4(sizes["W4"], reset=reset)


def print_line(line):
    print(json.dumps({key: value for key, value in line.items() if key != "info"}), flush=True)


def target_rows(lines):
    """(workload, figure, value, target, met) rows; met is None for a figure without a target."""
    bare = next((line["jobs_per_s"] for line in lines if line["workload"] == "W1-bare"), None)
    rows = []
    for line in lines:
        for figure, value in figures(line):
            for target, met in checks(line, figure, value, bare):
                rows.append((line["workload"], figure, value, target, met))
    return rows


def figures(line):
    """The line's figures for the table; lists (W8's query plans) are left to the JSON line."""
    for key, value in line.items():
        if key != "workload" and key != "info" and not isinstance(value, list):
            yield key, value
    for key, value in line.get("info", {}).items():
        yield f"({key})", value


def checks(line, figure, value, bare):
    """The (target, met) pairs of one figure."""
    key = (line["workload"], figure)
    found = []
    if figure == "delivered":
        found.append((f"== {line['n']}", value == line["n"]))
    if figure == "failed_jobs":
        # W2's storms end in FailedJob; the breaker's and the limits' workloads must end in none.
        expected = line["n"] if line["workload"].startswith("W2") else 0
        found.append((f"== {expected}", value == expected))
    if key == ("W5", "twilio_requests_in_outage"):
        # The threshold, what the 8 threads had in flight, and one probe a period: a handful.
        handful = 5 + 8 + line["outage_s"] // line["probe_interval_s"]
        found.append(compare(value, "<=", handful, " (threshold + threads + probes)"))
    if key == ("W6", "first_sent_after_s"):
        found.append(compare(value, "<=", line["probe_interval_s"] + 1.0, " (probe interval + 1 s)"))
    if key == ("W7", "max_in_any_second"):
        found.append(compare(value, "<=", line["limit_per_s"], " (the limit)"))
    if key == ("W7", "sent"):
        found.append(compare(value, "==", line["n"]))
    if key in TARGETS:
        found.append(compare(value, *TARGETS[key]))
    if key == ("W1", "jobs_per_s") and bare is not None:
        found.append(compare(value, ">=", bare, " (W1-bare)"))
    if key == ("W8-call", "delayed_p99_ms"):
        found.append(compare(value, "<=", line["p99_ms"], " (p99_ms)"))
    return found or [("", None)]


def compare(value, comparison, target, note=""):
    if comparison == "==":
        met = value == target
    else:
        met = value <= target if comparison == "<=" else value >= target
    return f"{comparison} {target}{note}", met


def print_table(rows):
    header = ("workload", "figure", "value", "target", "met")
    cells = [header] + [
        (workload, figure, str(value), target, "" if met is None else ("yes" if met else "NO"))
        for workload, figure, value, target, met in rows
    ]
    widths = [max(len(row[column]) for row in cells) for column in range(len(header))]
    print()
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def save(lines):
    harness.RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(harness.RESULTS / "runs.jsonl", "a") as log:
        for line in lines:
            log.write(json.dumps({"at": stamp, **line}) + "\n")


def stop_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def main():
    args = parse_args()
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    databases = []
    for name in [workload for workload in WORKLOADS if workload in args.workload]:
        used = WORKLOAD_DATABASES.get(name, (harness.DATABASE,))
        databases += [database for database in used if database not in databases]
    for database in databases:
        harness.prepare_database(database)
    harness.setup_django(databases[0])
    lines, failed = [], False
    try:
        for _ in range(args.repeat):
            for name in [workload for workload in WORKLOADS if workload in args.workload]:
                try:
                    measured = run_workload(name, sizes, args.reset)
                except Exception as error:
                    traceback.print_exc()
                    measured = [{"workload": name, "error": f"{type(error).__name__}: {error}"}]
                    failed = True
                for line in measured:
                    print_line(line)
                lines.extend(measured)
    finally:
        harness.Worker.stop_all()
    save(lines)
    if args.repeat > 1:
        print(f"\nMedians of {args.repeat} runs.")
    print_table(target_rows(medians([line for line in lines if "error" not in line])))
    return 1 if failed else 0


def medians(lines):
    """One line per (workload, n), each number the median of that figure over the runs."""
    runs = {}
    for line in lines:
        runs.setdefault((line["workload"], line["n"]), []).append(line)
    return [median_line(same) for same in runs.values()]


def median_line(lines):
    def combine(values):
        if all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values):
            return round(statistics.median(values), 3)
        return values[0]

    line = {key: combine([each[key] for each in lines]) for key in lines[0] if key != "info"}
    info = lines[0].get("info", {})
    line["info"] = {key: combine([each["info"][key] for each in lines]) for key in info}
    return line


if __name__ == "__main__":
    sys.exit(main())

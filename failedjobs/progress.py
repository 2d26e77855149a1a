"""Progress lines and the --batch-size type for the commands that work through large sets in batches."""

import argparse
import time
from collections.abc import Callable

from django.core.management.base import BaseCommand

#: Called by a long operation with how many rows (or messages) it has done so far, after each batch.
Progress = Callable[[int], None]

#: At the default verbosity, a progress line at most this often: a run shorter than this prints
#: only its result.
INTERVAL_S = 2.0


def progress_printer(
    command: BaseCommand, verbosity: int, verb: str, interval: float = INTERVAL_S
) -> Progress:
    """A Progress that writes "  <verb> N so far (R/s)" to the command's output.

    At verbosity 1 (the default) at most once every ``interval`` seconds, so a short run prints its
    result alone; at 2 and above after every batch; at 0 never.
    """
    started = last = time.monotonic()

    def report(done: int) -> None:
        nonlocal last
        now = time.monotonic()
        if verbosity >= 2 or (verbosity == 1 and now - last >= interval):
            last = now
            rate = done / max(now - started, 1e-3)
            command.stdout.write(f"  {verb} {done:,} so far ({rate:,.0f}/s)")
            command.stdout.flush()

    return report


def batch_size(value: str) -> int:
    """The type of a command's ``--batch-size``: a whole number, 1 or more."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a batch size (1 or more).")
    return number

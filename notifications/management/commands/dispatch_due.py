import argparse

from django.core.management.base import BaseCommand

from failedjobs.progress import progress_printer
from notifications import outbox


def batch_size(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a batch size (1 or more rows).")
    return number


class Command(BaseCommand):
    help = (
        "Enqueue scheduled notifications that are due, and queued ones whose message was lost "
        "(the scheduler does it every minute). With the queue off, send them here."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size",
            type=batch_size,
            default=outbox.DEFAULT_BATCH_SIZE,
            help=f"Rows taken per transaction (default {outbox.DEFAULT_BATCH_SIZE}).",
        )

    def handle(self, *args, batch_size, verbosity, **options):
        progress = progress_printer(self, verbosity, "dispatched")
        result = outbox.dispatch_due(batch_size=batch_size, progress=progress)
        if verbosity >= 1:
            self.stdout.write(str(result))

from django.core.management.base import BaseCommand

from failedjobs.progress import batch_size, progress_printer
from notifications import outbox


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

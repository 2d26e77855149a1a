from django.core.management.base import BaseCommand

from failedjobs.progress import batch_size, progress_printer
from notifications import gate, outbox


class Command(BaseCommand):
    help = (
        "Enqueue scheduled notifications that are due, queued ones whose message was lost, and held "
        "ones whose circuit breaker closed (the scheduler does it every minute). With the queue off, "
        "send them here."
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
        released = sum(gate.release_when_closed().values())
        if verbosity >= 1:
            self.stdout.write(f"{result}, {released} held whose circuit breaker closed")

from django.core.management.base import BaseCommand

from notifications import outbox


class Command(BaseCommand):
    help = (
        "Enqueue scheduled notifications that are due, and queued ones whose message was lost "
        "(the scheduler does it every minute). With the queue off, send them here."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size", type=int, default=outbox.DEFAULT_BATCH_SIZE, help="Rows taken per transaction."
        )

    def handle(self, *args, batch_size, **options):
        self.stdout.write(str(outbox.dispatch_due(batch_size=batch_size)))

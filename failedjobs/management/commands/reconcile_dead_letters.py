from django.core.management.base import BaseCommand, CommandError

from failedjobs import services
from failedjobs.progress import batch_size, progress_printer


class Command(BaseCommand):
    help = (
        "Copy messages from Redis's dead-letter queues into FailedJob (those whose recording failed). "
        "Exits 1 when some could not be recovered; the others are recovered all the same."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size",
            type=batch_size,
            default=services.DEFAULT_BATCH_SIZE,
            help=f"Dead letters read and filed at a time (default {services.DEFAULT_BATCH_SIZE}).",
        )

    def handle(self, *args, batch_size, verbosity, **options):
        progress = progress_printer(self, verbosity, "recovered")
        result = services.reconcile_dead_letters(batch_size=batch_size, progress=progress)
        if result.unreadable:
            raise CommandError(str(result))
        if verbosity >= 1:
            self.stdout.write(str(result))

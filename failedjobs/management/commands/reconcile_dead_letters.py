from django.core.management.base import BaseCommand, CommandError

from failedjobs import services


class Command(BaseCommand):
    help = (
        "Copy messages from Redis's dead-letter queues into FailedJob (those whose recording failed). "
        "Exits 1 when some could not be recovered; the others are recovered all the same."
    )

    def handle(self, *args, **options):
        result = services.reconcile_dead_letters()
        if result.unreadable:
            raise CommandError(str(result))
        self.stdout.write(str(result))

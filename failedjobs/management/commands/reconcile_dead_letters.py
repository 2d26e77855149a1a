from django.core.management.base import BaseCommand

from failedjobs import services


class Command(BaseCommand):
    help = "Copy messages from Redis's dead-letter queues into FailedJob (those whose recording failed)."

    def handle(self, *args, **options):
        added = services.reconcile_dead_letters()
        self.stdout.write(f"recovered {added}")

from django.core.management.base import BaseCommand

from failedjobs import services
from failedjobs.conf import setting


class Command(BaseCommand):
    help = "Delete failed jobs past their retention (the same work as the nightly periodic job)."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=setting("FAILED_JOBS_RETENTION_DAYS"))
        parser.add_argument("--done-days", type=int, default=setting("FAILED_JOBS_DONE_RETENTION_DAYS"))

    def handle(self, *args, days, done_days, **options):
        deleted = services.purge_old_jobs(days=days, done_days=done_days)
        self.stdout.write(f"deleted {deleted}")

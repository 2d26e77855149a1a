import argparse

from django.core.management.base import BaseCommand

from failedjobs import services
from failedjobs.conf import setting
from failedjobs.progress import batch_size, progress_printer


def days(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value} is not a number of days (0 or more).")
    return number


class Command(BaseCommand):
    help = "Delete failed jobs past their retention (the same work as the nightly periodic job)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=days,
            default=setting("FAILED_JOBS_RETENTION_DAYS"),
            help="Delete failed jobs older than this many days (default FAILED_JOBS_RETENTION_DAYS).",
        )
        parser.add_argument(
            "--done-days",
            type=days,
            default=setting("FAILED_JOBS_DONE_RETENTION_DAYS"),
            help="Delete retried and resolved jobs older than this (FAILED_JOBS_DONE_RETENTION_DAYS).",
        )
        parser.add_argument(
            "--include-recent-unhandled",
            action="store_true",
            help="Also delete unhandled failures younger than FAILED_JOBS_RETENTION_DAYS when --days is "
            "shorter; without it they are kept.",
        )
        parser.add_argument(
            "--batch-size",
            type=batch_size,
            default=services.DEFAULT_BATCH_SIZE,
            help=f"Rows deleted per transaction (default {services.DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )

    def handle(
        self, *args, days, done_days, include_recent_unhandled, batch_size, dry_run, verbosity, **options
    ):
        deleted = services.purge_old_jobs(
            days=days,
            done_days=done_days,
            include_recent_unhandled=include_recent_unhandled,
            dry_run=dry_run,
            batch_size=batch_size,
            progress=progress_printer(self, verbosity, "deleted"),
        )
        if verbosity >= 1:
            self.stdout.write(f"Dry run: would have deleted {deleted}" if dry_run else f"deleted {deleted}")

import argparse

from django.core.management.base import BaseCommand

from failedjobs.progress import batch_size, progress_printer
from notifications import retention
from notifications.conf import setting


def days(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value} is not a number of days (0 or more).")
    return number


class Command(BaseCommand):
    help = (
        "Delete sent and failed deliveries and read in-app notifications past their retention, in "
        "batches (the same work as the nightly periodic job). Deliveries still to send and unread "
        "notifications are always kept; a purged delivery's in-app notification stays."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--delivery-days",
            type=days,
            default=setting("NOTIFICATIONS_DELIVERY_RETENTION_DAYS"),
            help="Delete sent and failed deliveries not changed for this many days "
            "(default NOTIFICATIONS_DELIVERY_RETENTION_DAYS).",
        )
        parser.add_argument(
            "--read-inapp-days",
            type=days,
            default=setting("NOTIFICATIONS_READ_INAPP_RETENTION_DAYS"),
            help="Delete in-app notifications read more than this many days ago "
            "(default NOTIFICATIONS_READ_INAPP_RETENTION_DAYS).",
        )
        parser.add_argument(
            "--batch-size",
            type=batch_size,
            default=retention.DEFAULT_BATCH_SIZE,
            help=f"Rows deleted per transaction (default {retention.DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )

    def handle(self, *args, delivery_days, read_inapp_days, batch_size, dry_run, verbosity, **options):
        result = retention.purge_notifications(
            delivery_days=delivery_days,
            read_inapp_days=read_inapp_days,
            batch_size=batch_size,
            dry_run=dry_run,
            progress=progress_printer(self, verbosity, "deleted"),
        )
        if verbosity >= 1:
            self.stdout.write(str(result))

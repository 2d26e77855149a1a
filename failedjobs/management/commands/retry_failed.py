from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from failedjobs import services
from failedjobs.progress import progress_printer


def moment(value):
    """An ISO date or datetime given on the command line, as an aware datetime."""
    parsed = parse_datetime(value)
    if parsed is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"{value!r} is not a date (2026-11-23) or a datetime (2026-11-23T14:00).")
        parsed = datetime(day.year, day.month, day.day)
    return timezone.make_aware(parsed) if timezone.is_naive(parsed) else parsed


def positive(value):
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Send failed jobs again, with fresh retries. Rows are kept and marked retried."

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="*", type=int, help="FailedJob ids to retry.")
        parser.add_argument("--queue", help="Only jobs from this queue.")
        parser.add_argument("--actor", help="Only jobs of this actor.")
        parser.add_argument("--signature", help="Only jobs of this error group (their error signature).")
        parser.add_argument("--code", help="Only jobs with this error code (a provider's, e.g. 21211).")
        parser.add_argument(
            "--since", type=moment, help="Only jobs that failed at or after this date or time."
        )
        parser.add_argument("--until", type=moment, help="Only jobs that failed before this date or time.")
        parser.add_argument(
            "--all",
            action="store_true",
            dest="select_all",
            help="Every failed job (needed when no filter is given).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be retried; send nothing."
        )
        parser.add_argument("--limit", type=positive, help="Retry at most this many jobs.")
        parser.add_argument(
            "--batch-size",
            type=positive,
            default=services.DEFAULT_BATCH_SIZE,
            help=f"Jobs marked and enqueued per transaction (default {services.DEFAULT_BATCH_SIZE}). "
            "With the queue off, each job runs on its own.",
        )

    def handle(
        self,
        *args,
        ids,
        queue,
        actor,
        signature,
        code,
        since,
        until,
        select_all,
        dry_run,
        limit,
        batch_size,
        verbosity,
        **options,
    ):
        if not (ids or queue or actor or signature or code or since or until or select_all):
            raise CommandError(
                "Nothing selected: give job ids, a filter (--queue, --actor, --signature, --code, --since, "
                "--until) or --all."
            )
        if since and until and since >= until:
            raise CommandError("--since must be earlier than --until.")
        jobs = services.filter_jobs(
            ids=ids, queue=queue, actor=actor, signature=signature, code=code, since=since, until=until
        )
        if ids:
            missing = set(ids) - set(jobs.values_list("pk", flat=True))
            if missing:
                raise CommandError(f"No failed job with id {', '.join(map(str, sorted(missing)))}.")
        progress = progress_printer(self, verbosity, "retried")
        result = services.retry_jobs(
            jobs, limit=limit, batch_size=batch_size, dry_run=dry_run, progress=progress
        )
        if verbosity >= 1:
            prefix = "Dry run: would have " if dry_run else ""
            self.stdout.write(f"{prefix}{result}")

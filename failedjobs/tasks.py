"""Periodic upkeep of the dead-letter store, scheduled by periodiq (``manage.py runperiodiq``)."""

import dramatiq
from periodiq import cron

from . import services


@dramatiq.actor(queue_name="maintenance", periodic=cron("*/5 * * * *"), max_retries=0)
def reconcile_dead_letters():
    """Recover failures that could not be written to the database when they happened."""
    services.reconcile_dead_letters()


@dramatiq.actor(queue_name="maintenance", periodic=cron("17 3 * * *"), max_retries=0)
def purge_failed_jobs():
    """Apply the retention settings (FAILED_JOBS_RETENTION_DAYS, FAILED_JOBS_DONE_RETENTION_DAYS)."""
    services.purge_old_jobs()


# An hour: a retry of a very large group enqueues every message; each batch commits on its own.
@dramatiq.actor(queue_name="maintenance", max_retries=0, time_limit=3_600_000)
def run_bulk_operation(operation_id: int) -> None:
    """A retry, resolve or delete of many failed jobs that an operator confirmed in the admin."""
    from . import bulk

    bulk.run(operation_id)


@dramatiq.actor(
    actor_name="check_alerts", queue_name="maintenance", periodic=cron("* * * * *"), max_retries=0
)
def check_alerts() -> None:
    """Every minute: alert operators about new or growing error groups and dead letters left in Redis."""
    from . import alerts

    alerts.check_and_send()

"""Retention: the delivery log and read in-app notifications are purged once past their time.

``purge_notifications`` (every night from the scheduler, or ``manage.py purge_notifications``)
deletes

- deliveries in a final state (sent, failed) not changed for NOTIFICATIONS_DELIVERY_RETENTION_DAYS;
  a delivery still to send (scheduled, queued, sending) is kept whatever its age;
- in-app notifications read more than NOTIFICATIONS_READ_INAPP_RETENTION_DAYS ago; unread ones are
  kept.

An in-app notification outlives its delivery: deleting a delivery sets the notification's
``delivery`` to NULL (``on_delete=SET_NULL``), so purging the log never takes a user's notification.

Rows go in batches, each locked and deleted in its own transaction, so a purge of millions of rows
never holds one long transaction and a purge that stops half-way keeps what it did. Rows another
transaction has locked are skipped, for the next run.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, models, transaction
from django.utils import timezone

from failedjobs.progress import Progress

from .conf import setting
from .models import Delivery, InAppNotification

DEFAULT_BATCH_SIZE = 5000
FINAL_STATUSES = (
    Delivery.Status.SENT,
    Delivery.Status.FAILED,
    Delivery.Status.DELIVERED,
    Delivery.Status.UNDELIVERED,
    Delivery.Status.SUPPRESSED,
)


@dataclass
class PurgeResult:
    deliveries: int = 0
    read_inapp: int = 0
    dry_run: bool = False

    def __str__(self) -> str:
        counts = f"{self.deliveries} deliveries, {self.read_inapp} read in-app notifications"
        return f"Dry run: would have deleted {counts}" if self.dry_run else f"deleted {counts}"


def purge_notifications(
    *,
    delivery_days: int | None = None,
    read_inapp_days: int | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> PurgeResult:
    """Delete final deliveries older than ``delivery_days`` and in-app notifications read more than
    ``read_inapp_days`` ago (defaults: the retention settings), ``batch_size`` rows a transaction.

    Returns how many of each were deleted, or with ``dry_run`` would be (counted, nothing deleted).
    Raises ValueError for a negative number of days or a batch size below 1. ``progress`` is called
    with the number of rows (of both kinds) deleted so far after each batch.
    """
    if delivery_days is None:
        delivery_days = setting("NOTIFICATIONS_DELIVERY_RETENTION_DAYS")
    if read_inapp_days is None:
        read_inapp_days = setting("NOTIFICATIONS_READ_INAPP_RETENTION_DAYS")
    check_days(delivery_days, "delivery_days")
    check_days(read_inapp_days, "read_inapp_days")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a number of rows, 1 or more (got {batch_size!r}).")
    now = now or timezone.now()
    inapp = old_read_inapp(now - timedelta(days=read_inapp_days))
    deliveries = old_final_deliveries(now - timedelta(days=delivery_days))
    if dry_run:
        return PurgeResult(deliveries=deliveries.count(), read_inapp=inapp.count(), dry_run=True)
    # Notifications first: the deliveries' delete then has fewer of them to unlink.
    read_inapp = delete_in_batches(inapp, batch_size, progress)

    def deliveries_progress(done: int) -> None:
        if progress:
            progress(read_inapp + done)

    return PurgeResult(
        deliveries=delete_in_batches(deliveries, batch_size, deliveries_progress), read_inapp=read_inapp
    )


def check_days(days: object, name: str) -> None:
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise ValueError(f"{name} must be a number of days, 0 or more (got {days!r}).")


def old_final_deliveries(cutoff: datetime) -> models.QuerySet[Delivery]:
    """Sent and failed deliveries not changed since ``cutoff``.

    A failed delivery retried yesterday counts from yesterday. Rows are created before they change,
    so the condition on created_at adds nothing but lets PostgreSQL find them on delivery_created.
    """
    return Delivery.objects.filter(status__in=FINAL_STATUSES, updated_at__lt=cutoff, created_at__lt=cutoff)


def old_read_inapp(cutoff: datetime) -> models.QuerySet[InAppNotification]:
    """In-app notifications read before ``cutoff``; unread ones are never taken."""
    return InAppNotification.objects.filter(read_at__isnull=False, read_at__lt=cutoff)


def delete_in_batches(rows: models.QuerySet, batch_size: int, progress: Progress | None = None) -> int:
    """Delete ``rows`` in primary key order, ``batch_size`` a transaction; return how many went.

    Each batch locks its rows (skipping those locked elsewhere) with the query's conditions, so a
    row that changed since (a failed delivery retried meanwhile) is not taken, and deletes them
    through the ORM, which applies the models' on_delete rules. The next batch starts after the
    last primary key of this one: no batch reads again what an earlier one deleted.
    """
    model = rows.model
    skip_locked = connection.features.has_select_for_update_skip_locked
    deleted, after = 0, None
    while True:
        with transaction.atomic():
            batch = rows if after is None else rows.filter(pk__gt=after)
            pks = list(
                batch.order_by("pk")
                .select_for_update(skip_locked=skip_locked)
                .values_list("pk", flat=True)[:batch_size]
            )
            if not pks:
                return deleted
            _, per_model = model._default_manager.filter(pk__in=pks).only("pk").delete()
        deleted += per_model.get(model._meta.label, 0)
        after = pks[-1]
        if progress:
            progress(deleted)

"""The delivery log as an outbox: the database, not Redis, is the record of what is still to send.

``dispatch_due`` (every minute from the scheduler, or ``manage.py dispatch_due``) enqueues the
scheduled deliveries that are due, and enqueues again the queued ones whose message never reached a
worker: lost between a commit and its enqueue, or with a Redis that lost its data. Deliveries left
``sending`` past the time limit get their message again too, so that a worker settles them (as
DeliveryOutcomeUnknown: nobody knows whether the provider got them). Rows are taken
with ``SELECT ... FOR UPDATE SKIP LOCKED``, so two dispatchers never take the same row; a message
enqueued twice all the same is sent once, since only the attempt that claims the row sends.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from dramatiq import Message

from failedjobs import dispatch
from failedjobs.dispatch import queue_available
from failedjobs.progress import Progress

from . import breaker
from .conf import setting
from .models import Delivery

DEFAULT_BATCH_SIZE = 500


@dataclass
class DispatchResult:
    due: int = 0
    redriven: int = 0
    settled: int = 0

    def __str__(self) -> str:
        return f"enqueued {self.due} due, {self.redriven} again, {self.settled} left sending"


def message_for(delivery: Delivery, *, recheck: bool = True) -> Message:
    """The delivery's message, under the message id recorded on the row. With ``recheck`` (a
    delivery that waited), the worker checks the recipient's preferences again as it sends it."""
    from .tasks import ACTORS

    actor = ACTORS[delivery.channel]
    return actor.message(**delivery.payload(recheck=recheck)).copy(message_id=delivery.message_id)


def dispatch_due(*, batch_size: int = DEFAULT_BATCH_SIZE, progress: Progress | None = None) -> DispatchResult:
    """Enqueue what is due, and what was lost; with the queue off, send it here.

    ``progress`` is called with the number of rows dispatched so far after each batch.
    """
    # One cutoff for the whole run: the rows it touches are not taken again.
    start, result = timezone.now(), DispatchResult()
    while taken := dispatch_batch(due(start), batch_size):
        result.due += taken
        if progress:
            progress(result.due)
    # Messages of a channel whose breaker is open wait in Redis untouched (their queue is not read):
    # they are not lost.
    held = breaker.open_channels() if queue_available() else []
    while taken := dispatch_batch(lost(start).exclude(channel__in=held), batch_size):
        result.redriven += taken
        if progress:
            progress(result.due + result.redriven)
    # Not in a loop: these rows keep their status until a worker settles them.
    result.settled = dispatch_batch(stuck(start), batch_size, mark_queued=False)
    return result


def due(now: datetime) -> QuerySet[Delivery]:
    # In the order of its partial index: a batch reads its own index entries, not every due row.
    return Delivery.objects.filter(status=Delivery.Status.SCHEDULED, send_at__lte=now).order_by("send_at")


def lost(now: datetime) -> QuerySet[Delivery]:
    """Queued deliveries whose message should have run long ago.

    Never tried: after NOTIFICATIONS_REDRIVE_AFTER_S. Tried and waiting for a retry in Redis: after
    the longest retry delay (twice NOTIFICATIONS_MAX_BACKOFF_MS, with Dramatiq's jitter) on top.
    """
    after = timedelta(seconds=setting("NOTIFICATIONS_REDRIVE_AFTER_S"))
    retry_after = after + timedelta(milliseconds=2 * setting("NOTIFICATIONS_MAX_BACKOFF_MS"))
    never_tried = Q(attempts=0, updated_at__lt=now - after)
    waiting_for_a_retry = Q(updated_at__lt=now - retry_after)
    queued = Delivery.objects.filter(never_tried | waiting_for_a_retry, status=Delivery.Status.QUEUED)
    return queued.order_by("updated_at")


def stuck(now: datetime) -> QuerySet[Delivery]:
    """Deliveries an attempt left 'sending' past the time limit and NOTIFICATIONS_REDRIVE_AFTER_S more
    (time for that attempt's own redelivery to settle them first)."""
    after = timedelta(seconds=setting("NOTIFICATIONS_REDRIVE_AFTER_S"))
    after += timedelta(milliseconds=setting("NOTIFICATIONS_TIME_LIMIT_MS"))
    return Delivery.objects.filter(status=Delivery.Status.SENDING, updated_at__lt=now - after).order_by("pk")


def dispatch_batch(rows: QuerySet[Delivery], batch_size: int, *, mark_queued: bool = True) -> int:
    """Take a batch of rows, mark them queued now (unless not ``mark_queued``) and enqueue their
    messages; return how many.

    The messages go to the broker before the commit: a dispatcher that dies in between leaves the
    rows as they were, for the next run. Messages that must run here run after the commit.
    """
    with transaction.atomic():
        batch = list(locked(rows)[:batch_size])
        if not batch:
            return 0
        if mark_queued:
            pks = [delivery.pk for delivery in batch]
            Delivery.objects.filter(pk__in=pks).update(
                status=Delivery.Status.QUEUED, updated_at=timezone.now()
            )
        to_run_here = dispatch.enqueue_many([message_for(delivery) for delivery in batch])
    for message in to_run_here:
        dispatch.run_now(message)
    return len(batch)


def locked(rows: QuerySet[Delivery]) -> QuerySet[Delivery]:
    """The rows locked for this transaction, skipping those another dispatcher holds."""
    skip_locked = connection.features.has_select_for_update_skip_locked
    return rows.select_for_update(skip_locked=skip_locked)

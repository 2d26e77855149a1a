"""Running one delivery: claim it, send it, record what happened.

The same code runs in a Dramatiq worker and, in synchronous mode, in the caller. The Delivery row is
the guard against sending twice: a message is only sent by whoever moves its row from queued (or
failed, when an operator retries it) to sending. In-app notifications need no such claim: a unique
constraint on their row does the same job in fewer statements.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from . import statements
from .channels import get_channel
from .exceptions import (
    AlreadyDelivered,
    DeliveryError,
    DeliveryOutcomeUnknown,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from .models import Delivery

logger = logging.getLogger(__name__)

Status = Delivery.Status
MAX_ERROR_CHARS = 4000
#: Hand-written statements (see statements.py) name the table and its columns.
TABLE = Delivery._meta.db_table
COUNT_ATTEMPT = ", attempts = attempts + 1"


def deliver(payload):
    channel = get_channel(payload["channel"])
    if channel.guarded_by_constraint:
        return deliver_guarded(channel, payload)
    delivery_id = payload["delivery_id"]
    if not claim(delivery_id):
        return None
    try:
        provider_message_id = channel.send(payload)
    except Exception as error:
        record_attempt_error(delivery_id, error)
        raise
    mark_sent(delivery_id, provider_message_id)
    return provider_message_id


def deliver_guarded(channel, payload):
    """The channel records the delivery itself, and knows when it was delivered before."""
    delivery_id = payload["delivery_id"]
    try:
        channel.deliver_once(payload)
    except AlreadyDelivered:
        logger.info("Delivery %s was already sent; not sending it again.", delivery_id)
    except Exception as error:
        record_attempt_error(delivery_id, error, attempt=True)
        raise


def claim(delivery_id):
    """Move the row to sending; False when it was already sent."""
    if claim_row(delivery_id):
        return True
    delivery = Delivery.objects.filter(pk=delivery_id).first()
    if delivery is None:
        raise PermanentDeliveryError(f"Delivery {delivery_id} does not exist.")
    if delivery.status == Status.SENT:
        log_already_sent(delivery)
        return False
    refuse_interrupted(delivery)


def claim_row(delivery_id):
    """The claim in one statement: True if the row was queued (or failed) and is now sending."""
    claimed = statements.execute(
        f"UPDATE {TABLE} SET status = %s, attempts = attempts + 1, updated_at = %s "
        "WHERE id = %s AND status IN (%s, %s) RETURNING id",
        [Status.SENDING, statements.now(), delivery_id, Status.QUEUED, Status.FAILED],
    )
    return claimed is not None


def refuse_interrupted(delivery):
    """The row says sending but this is a new attempt: the earlier one died mid-send, or still runs."""
    time_limit = timedelta(milliseconds=settings.NOTIFICATIONS_TIME_LIMIT_MS)
    still_running_until = delivery.updated_at + time_limit
    if still_running_until > timezone.now():
        wait = still_running_until - timezone.now()
        raise TransientDeliveryError(
            f"Delivery {delivery.pk} may still be in the hands of another attempt.",
            delay=int(wait.total_seconds() * 1000) + 100,
        )
    error = DeliveryOutcomeUnknown(
        f"An earlier attempt at delivery {delivery.pk} stopped while sending; it may have been delivered. "
        "Not sent again automatically: retry it from failed jobs to send it anyway."
    )
    record_attempt_error(delivery.pk, error)
    raise error


def mark_sent(delivery_id, provider_message_id, *, attempt=False):
    """Record success; ``attempt`` counts this attempt, for channels that did not claim the row first."""
    now = statements.now()
    statements.execute(
        f"UPDATE {TABLE} SET status = %s, provider_message_id = %s, sent_at = %s, updated_at = %s, "
        f"last_error = '', error_code = ''{COUNT_ATTEMPT if attempt else ''} WHERE id = %s",
        [Status.SENT, provider_message_id or "", now, now, delivery_id],
    )


def record_attempt_error(delivery_id, error, *, attempt=False):
    """A permanent error fails the delivery; any other leaves it queued for the next retry."""
    permanent = isinstance(error, PermanentDeliveryError)
    code = error.code if isinstance(error, DeliveryError) and error.code is not None else ""
    statements.execute(
        f"UPDATE {TABLE} SET status = %s, last_error = %s, error_code = %s, "
        f"updated_at = %s{COUNT_ATTEMPT if attempt else ''} WHERE id = %s AND status <> %s",
        [
            Status.FAILED if permanent else Status.QUEUED,
            describe(error),
            str(code),
            statements.now(),
            delivery_id,
            Status.SENT,
        ],
    )


def mark_failed(delivery_id, error=None):
    """Retries are exhausted (or synchronous delivery failed): the delivery is failed for good."""
    error_text = [] if error is None else [describe(error)]
    statements.execute(
        f"UPDATE {TABLE} SET status = %s{', last_error = %s' if error_text else ''}, updated_at = %s "
        "WHERE id = %s AND status <> %s",
        [Status.FAILED, *error_text, statements.now(), delivery_id, Status.SENT],
    )


def describe(error):
    return f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]


def log_already_sent(delivery):
    logger.info("Delivery %s was already sent; not sending it again.", delivery.pk)

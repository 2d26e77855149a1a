"""What the providers report after accepting a message: delivered, or undelivered and why.

Twilio's status callbacks (webhooks.py) and the email provider's tracking events (tracking.py) end
here. Every change is one conditional UPDATE on the delivery's current status, so a receipt sent
twice changes nothing the second time, and one arriving late never moves a delivery back
(``delivered`` never becomes ``sent`` again). An undelivered message whose error a later attempt may
get past (Twilio 30003, an unreachable handset) is scheduled again, on the workers' backoff, for the
dispatcher to send; when no retry is left, or none can help, it is ``undelivered`` and filed as a
failed job, which an operator retries like any other.
"""

import hashlib
import logging
from datetime import timedelta
from enum import StrEnum

from django.db import transaction
from django.db.models import Q, QuerySet, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from dramatiq import Message
from dramatiq.common import compute_backoff

from failedjobs.services import fail_message

from . import outbox
from .conf import setting
from .exceptions import Undelivered
from .models import MAX_ERROR_CHARS, Delivery
from .provider_errors import NO_ANSWER

logger = logging.getLogger("notifications.receipts")

Status = Delivery.Status
#: What a receipt may change: a delivery on its way, or accepted by the provider.
IN_FLIGHT = [Status.SENDING, Status.SENT]
#: A delivery whose send call went unanswered, waiting for its next attempt: a receipt for it is the
#: answer that did not come (the provider accepted the message after all).
UNANSWERED = Q(status__in=[Status.QUEUED, Status.HELD], error_code=NO_ANSWER, provider_message_id="")


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DELIVERED = "delivered"
    RETRY = "retry"
    UNDELIVERED = "undelivered"
    IGNORED = "ignored"


def about_message(delivery_id: int, provider_message_id: str) -> QuerySet[Delivery]:
    """The delivery, while the receipt is about its latest message (or its id is not recorded yet),
    and that message is on its way, accepted, or unanswered."""
    latest = Q(provider_message_id=provider_message_id) | Q(provider_message_id="")
    return Delivery.objects.filter(latest, Q(status__in=IN_FLIGHT) | UNANSWERED, pk=delivery_id)


def record_accepted(delivery_id: int, provider_message_id: str) -> Outcome:
    """The provider reports a message it accepted (queued, sent): for a delivery whose send call went
    unanswered, it is sent, so that its next attempt sends nothing again. Otherwise nothing to do:
    the send call's answer says as much."""
    now = timezone.now()
    changed = Delivery.objects.filter(UNANSWERED, pk=delivery_id).update(
        status=Status.SENT,
        provider_message_id=provider_message_id,
        sent_at=now,
        updated_at=now,
        last_error="",
        error_code="",
    )
    return Outcome.ACCEPTED if changed else Outcome.IGNORED


def record_delivered(delivery_id: int, provider_message_id: str) -> Outcome:
    now = timezone.now()
    changed = about_message(delivery_id, provider_message_id).update(
        status=Status.DELIVERED,
        provider_message_id=provider_message_id,
        sent_at=Coalesce("sent_at", Value(now)),
        receipt_at=now,
        updated_at=now,
        last_error="",
        error_code="",
    )
    return Outcome.DELIVERED if changed else Outcome.IGNORED


def record_undelivered(
    delivery_id: int,
    provider_message_id: str,
    *,
    provider: str,
    code: str,
    description: str,
    retryable: bool,
) -> Outcome:
    """A retry when one may help and is left; otherwise undelivered and a failed job."""
    error = Undelivered(description, provider=provider, code=code or None)
    with transaction.atomic():
        delivery = about_message(delivery_id, provider_message_id).select_for_update().first()
        if delivery is None:
            return Outcome.IGNORED
        now = timezone.now()
        changes = {
            "provider_message_id": provider_message_id,
            "receipt_at": now,
            "updated_at": now,
            "error_code": code[:32],
            "last_error": f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS],
        }
        if retryable and delivery.attempts <= setting("NOTIFICATIONS_MAX_RETRIES"):
            changes.update(status=Status.SCHEDULED, send_at=now + backoff(delivery.attempts))
            Delivery.objects.filter(pk=delivery.pk).update(**changes)
            return Outcome.RETRY
        Delivery.objects.filter(pk=delivery.pk).update(status=Status.UNDELIVERED, **changes)
        delivery.refresh_from_db()
        fail_message(failed_message(delivery), error, attempts=delivery.attempts)
    return Outcome.UNDELIVERED


def backoff(attempts: int) -> timedelta:
    _, delay_ms = compute_backoff(
        attempts - 1,
        factor=setting("NOTIFICATIONS_MIN_BACKOFF_MS"),
        max_backoff=setting("NOTIFICATIONS_MAX_BACKOFF_MS"),
    )
    return timedelta(milliseconds=delay_ms)


def failed_message(delivery: Delivery) -> Message:
    """The delivery's message under an id of its own for this failure: the delivery's message may
    be a failed job already, from an earlier attempt, and a failed job is kept once per id."""
    message_id = hashlib.md5(f"{delivery.message_id}/undelivered/{delivery.attempts}".encode()).hexdigest()
    return outbox.message_for(delivery).copy(message_id=message_id)

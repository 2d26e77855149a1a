"""The email provider's feedback, through django-anymail's ``tracking`` signal.

Anymail's webhook views (``path("anymail/", include("anymail.urls"))``) check the ESP's
authentication and turn its events into AnymailTrackingEvent; this receiver records them like
Twilio's status callbacks: ``delivered``; ``bounced`` and ``rejected`` are undelivered for good (and a
bounce suppresses the address); ``failed`` is worth a retry; ``complained`` and ``unsubscribed``
suppress the address. Other events (opened, clicked, deferred, queued) change nothing.

The delivery is found by its ``delivery_id`` in the event's metadata when the ESP returns it, else
by the ESP's message id, which the email channel records as the provider message id.
"""

import logging
from typing import Any

from anymail.signals import AnymailTrackingEvent

from . import receipts, suppression
from .models import Delivery

logger = logging.getLogger("notifications.tracking")

SUPPRESSING = {
    "bounced": suppression.Reason.HARD_BOUNCE,
    "complained": suppression.Reason.COMPLAINT,
    "unsubscribed": suppression.Reason.UNSUBSCRIBED,
}
UNDELIVERED = {"bounced", "rejected", "failed"}


def record_tracking_event(sender: Any, *, event: AnymailTrackingEvent, esp_name: str, **kwargs: Any) -> None:
    kind = event.event_type
    if kind in SUPPRESSING and event.recipient:
        suppression.suppress("email", event.recipient, SUPPRESSING[kind], describe(event, esp_name))
    if kind != "delivered" and kind not in UNDELIVERED:
        return
    delivery = find_delivery(event)
    if delivery is None:
        logger.info("No email delivery for %s's %s event on message %s.", esp_name, kind, event.message_id)
        return
    message_id = str(event.message_id or delivery.provider_message_id)
    if kind == "delivered":
        receipts.record_delivered(delivery.pk, message_id)
        return
    receipts.record_undelivered(
        delivery.pk,
        message_id,
        provider=esp_name,
        code=kind,
        description=describe(event, esp_name),
        retryable=kind == "failed",
    )


def find_delivery(event: AnymailTrackingEvent) -> Delivery | None:
    emails = Delivery.objects.filter(channel="email")
    delivery_id = (event.metadata or {}).get("delivery_id")
    if delivery_id is not None and str(delivery_id).isdigit():
        return emails.filter(pk=int(delivery_id)).first()
    if event.message_id:
        return emails.filter(provider_message_id=str(event.message_id)).first()
    return None


def describe(event: AnymailTrackingEvent, esp_name: str) -> str:
    parts = [f"{esp_name} reported the email {event.event_type}"]
    if event.reject_reason:
        parts.append(f"reason: {event.reject_reason}")
    if event.mta_response or event.description:
        parts.append(str(event.mta_response or event.description))
    return "; ".join(parts)

"""The suppression list: recipients not to send to on a channel, and why.

Fed by Twilio (a STOP reply, error 21610), by the email provider's feedback (hard bounces, spam
complaints, unsubscribes) and by operators in the admin; an inbound START lifts a STOP. A
notification to a suppressed recipient is recorded with the status ``suppressed`` and not sent; the
call does not raise.

Which messages go through anyway: the templates in NOTIFICATIONS_SUPPRESSION_BYPASS_TEMPLATES
(``verification`` by default) get past a complaint or an unsubscribe, which are about mail the person
did not ask for; nothing gets past a STOP (the law, and Twilio refuses it anyway), a hard bounce (the
address does not exist) or an operator's entry.
"""

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from .conf import setting
from .models import Delivery, Suppression, suppression_address

logger = logging.getLogger("notifications.suppression")

Reason = Suppression.Reason
#: Reasons that a template in NOTIFICATIONS_SUPPRESSION_BYPASS_TEMPLATES gets past.
BYPASSABLE = {Reason.COMPLAINT, Reason.UNSUBSCRIBED}
#: Channels with a suppression list (in-app notifications have none).
CHANNELS = {"email", "sms", "whatsapp"}


def suppress(channel: str, recipient: str, reason: str, detail: str = "") -> Suppression:
    """Add the recipient to the list; an entry there already is kept, unless this reason is stronger
    (a hard bounce after a complaint)."""
    address = suppression_address(channel, recipient)
    fields = {"reason": reason, "detail": detail[:2000]}
    try:
        with transaction.atomic():
            entry, created = Suppression.objects.get_or_create(
                channel=channel, recipient=address, defaults=fields
            )
    except IntegrityError:  # added meanwhile by a concurrent receipt
        entry, created = Suppression.objects.get(channel=channel, recipient=address), False
    if not created and entry.reason in BYPASSABLE and reason not in BYPASSABLE:
        Suppression.objects.filter(pk=entry.pk).update(**fields, created_at=timezone.now())
        entry.refresh_from_db()
    if created:
        logger.info("Suppressed a %s recipient: %s.", channel, Reason(reason).label)
    return entry


def lift(channel: str, recipient: str, reasons: list[str] | None = None) -> int:
    """Take the recipient off the list (only for these reasons, when given); return how many entries."""
    entries = Suppression.objects.of(channel, recipient)
    if reasons is not None:
        entries = entries.filter(reason__in=reasons)
    deleted, _ = entries.delete()
    return deleted


def withheld_because(channel: str, recipient: str, template: str) -> str:
    """Why a notification must not go to this recipient, or "" when it may."""
    if channel not in CHANNELS:
        return ""
    entries = Suppression.objects.of(channel, recipient)
    if template in setting("NOTIFICATIONS_SUPPRESSION_BYPASS_TEMPLATES"):
        entries = entries.exclude(reason__in=BYPASSABLE)
    entry = entries.first()
    if entry is None:
        return ""
    when = entry.created_at.strftime("%Y-%m-%d %H:%M %Z")
    return f"Suppressed: {entry.get_reason_display()} ({channel}, since {when}). Lift it in the admin."


def withhold_if_suppressed(delivery_id: int, channel: str, recipient: str, template: str) -> bool:
    """At send time: a recipient suppressed since the call (a reminder scheduled before a STOP) is
    not sent to; the delivery, claimed by this attempt, becomes ``suppressed``. True then."""
    reason = withheld_because(channel, recipient, template)
    if not reason:
        return False
    Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.SENDING).update(
        status=Delivery.Status.SUPPRESSED, last_error=reason, updated_at=timezone.now()
    )
    logger.info("Delivery %s not sent: %s", delivery_id, reason)
    return True

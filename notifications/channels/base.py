"""What every channel does: check a call before anything is enqueued, then deliver one message.

``deliver`` fixes the sequence for every channel: claim the Delivery row, send, record what
happened. A channel fills in the steps (``send``, ``provider_error``, ...) and leaves the sequence
alone. The Delivery row is the guard against sending twice: only the attempt that moves it from
queued to sending sends.
"""

import logging
import re
from datetime import timedelta
from typing import Any

from django.db import DatabaseError
from django.utils import timezone

from failedjobs.dispatch import running_here

from ..conf import setting
from ..exceptions import (
    DeliveryError,
    DeliveryOutcomeUnknown,
    PermanentDeliveryError,
    TransientDeliveryError,
    UnknownTemplate,
)
from ..payload import Payload

logger = logging.getLogger("notifications.delivery")

TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")


def provider_timeout(configured: float) -> float:
    """A provider call's timeout: bounded by NOTIFICATIONS_SYNC_TIMEOUT_S when a caller waits for it."""
    if running_here():
        return min(configured, setting("NOTIFICATIONS_SYNC_TIMEOUT_S"))
    return configured


class BaseChannel:
    """A way of reaching people. Subclasses set ``label`` and implement the steps."""

    #: Set from the channel's key in NOTIFICATIONS_CHANNELS.
    name = ""
    label = ""
    #: The id of the system check warning that the channel is not configured.
    check_id = "notifications.W100"
    #: The provider whose circuit breaker the channel goes through ("": none).
    provider = ""

    @property
    def queue_name(self) -> str:
        return self.name

    @property
    def actor_name(self) -> str:
        return f"deliver_{self.name}"

    # Checks made at call time, before anything is recorded.

    def check_configured(self) -> None:
        """Raise ChannelNotConfigured naming the missing setting."""

    def clean_recipient(self, recipient: Any) -> str:
        """Return the recipient in canonical form, or raise InvalidRecipient."""
        raise NotImplementedError

    def check_template(self, template: str, language: str) -> None:
        """Raise UnknownTemplate unless the template exists for this channel."""
        if not isinstance(template, str) or not TEMPLATE_NAME.match(template):
            raise UnknownTemplate(f"{template!r} is not a valid {self.name} template name.")

    def check_message(self, payload: Payload) -> None:
        """Raise InvalidNotification when the message, as it will be sent, cannot be."""

    # The delivery, in a worker or synchronously.

    def deliver(self, payload: Payload) -> str | None:
        """Claim, send, record. Returns the provider's id, or None when it had been sent before."""

        delivery_id = payload["delivery_id"]
        if not self.claim(delivery_id) or self.withheld(payload):
            return None
        try:
            provider_message_id = self.send(payload)
        except Exception as error:
            failure = error if isinstance(error, DeliveryError) else self.provider_error(error)
            self.record_error(delivery_id, failure or error)
            if failure is None or failure is error:
                raise
            raise failure from error
        self.record_sent(delivery_id, provider_message_id)
        return provider_message_id

    def withheld(self, payload: Payload) -> bool:
        """True when the delivery does not go now: the recipient went on the suppression list since
        the call (it is marked suppressed), or, for one that waited, their preferences changed since
        (see preferences.withhold_at_send)."""
        from ..preferences import withhold_at_send
        from ..suppression import withhold_if_suppressed

        delivery_id = payload["delivery_id"]
        return withhold_if_suppressed(
            delivery_id, self.name, payload["recipient"], payload["template"]
        ) or withhold_at_send(payload)

    def record_error(self, delivery_id: int, error: Exception) -> None:
        """Record the provider's answer; if the database fails now, the answer still goes on up.

        It is what decides between a retry and a failed job, and what the failed job shows.
        """
        from ..models import Delivery

        try:
            Delivery.objects.record_error(delivery_id, error)
        except DatabaseError:
            logger.exception("Could not record the error of delivery %s: %s", delivery_id, error)

    def send(self, payload: Payload) -> str:
        """Send one message and return the provider's id for it."""
        raise NotImplementedError

    def record_sent(self, delivery_id: int, provider_message_id: str) -> None:
        from ..models import Delivery

        Delivery.objects.mark_sent(delivery_id, provider_message_id)

    def provider_error(self, error: Exception) -> DeliveryError | None:
        """What a provider's exception means: permanent or transient; None for a bug of ours."""
        return None

    def claim(self, delivery_id: int) -> bool:
        """True when this attempt may send; False when the delivery needs nothing more."""
        from ..models import Delivery

        if Delivery.objects.claim(delivery_id):
            return True
        delivery = Delivery.objects.filter(pk=delivery_id).first()
        if delivery is None:
            raise PermanentDeliveryError(f"Delivery {delivery_id} does not exist.")
        if delivery.status == Delivery.Status.SENDING:
            return self.claim_interrupted(delivery)
        logger.info("Delivery %s is %s; not sending it again.", delivery_id, delivery.status)
        return False

    def claim_interrupted(self, delivery: Any) -> bool:
        """The row says sending, but this is a new attempt: an earlier one died mid-send, or still runs."""
        from ..models import Delivery

        time_limit = timedelta(milliseconds=setting("NOTIFICATIONS_TIME_LIMIT_MS"))
        wait = delivery.updated_at + time_limit - timezone.now()
        if wait > timedelta(0):
            raise TransientDeliveryError(
                f"Delivery {delivery.pk} may still be in the hands of another attempt.",
                delay=int(wait.total_seconds() * 1000) + 100,
            )
        error = DeliveryOutcomeUnknown(
            f"An earlier attempt at delivery {delivery.pk} stopped while sending; it may have been "
            "delivered. Not sent again automatically: retry it from failed jobs to send it anyway."
        )
        Delivery.objects.record_error(delivery.pk, error)
        raise error

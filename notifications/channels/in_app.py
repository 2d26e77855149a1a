"""In-app notifications: a row in InAppNotification, at most one per Delivery."""

import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError

from .. import stream
from ..exceptions import DeliveryError, InvalidRecipient, PermanentDeliveryError
from ..payload import Payload
from .base import BaseChannel

logger = logging.getLogger("notifications.delivery")


class InAppChannel(BaseChannel):
    """Sending marks the delivery sent and writes the notification at once (one statement on
    PostgreSQL, one transaction elsewhere). So there is no claim before it and nothing to record
    after it, and no attempt can stop half-way: a delivery is sent with its notification, or not.
    """

    label = "In-app"

    def clean_recipient(self, recipient: Any) -> str:
        """Accept a user or a user's primary key; return the key."""
        user_model = get_user_model()
        if isinstance(recipient, user_model):
            if recipient.pk is None:
                raise InvalidRecipient("The user must be saved before they can be notified.")
            return str(recipient.pk)
        if isinstance(recipient, int) and not isinstance(recipient, bool):
            if not user_model._default_manager.filter(pk=recipient).exists():
                raise InvalidRecipient(f"There is no user with id {recipient}.")
            return str(recipient)
        raise InvalidRecipient(f"{recipient!r} is not a user or a user id.")

    def check_template(self, template: str, language: str) -> None:
        """In-app notifications carry their own title and body."""

    def claim(self, delivery_id: int) -> bool:
        return True  # send claims

    def send(self, payload: Payload) -> str:
        from ..models import Delivery

        delivery_id, context = payload["delivery_id"], payload["context"]
        user_id = int(payload["recipient"])
        written = Delivery.objects.deliver_in_app(
            delivery_id, user_id, context["title"], context["body"], context["link"]
        )
        if written is None:
            if not Delivery.objects.filter(pk=delivery_id).exists():
                raise PermanentDeliveryError(f"Delivery {delivery_id} does not exist.")
            logger.info("Delivery %s was sent before; not sending it again.", delivery_id)
            return ""
        # Committed already (one statement, or its own transaction): live streams may read it.
        stream.publish_notification(user_id, written, context)
        return ""

    def record_sent(self, delivery_id: int, provider_message_id: str) -> None:
        """send recorded it."""

    def provider_error(self, error: Exception) -> DeliveryError | None:
        if isinstance(error, IntegrityError):
            return PermanentDeliveryError(f"The user to notify does not exist: {error}")
        return None

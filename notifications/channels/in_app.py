"""In-app notifications: a row in InAppNotification, at most one per Delivery."""

import contextlib
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction

from ..exceptions import DeliveryError, InvalidRecipient, PermanentDeliveryError
from ..payload import Payload
from .base import BaseChannel


class InAppChannel(BaseChannel):
    """Sending is an insert. The unique InAppNotification.delivery makes it happen once per Delivery,
    so an attempt that stopped mid-send can be told apart from one that delivered.
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

    def send(self, payload: Payload) -> str:
        from ..models import InAppNotification

        context = payload["context"]
        with savepoint_if_in_transaction():
            InAppNotification.objects.create(
                recipient_id=payload["recipient"],
                delivery_id=payload["delivery_id"],
                title=context["title"],
                body=context["body"],
                link=context["link"],
            )
        return ""

    def provider_error(self, error: Exception) -> DeliveryError | None:
        if isinstance(error, IntegrityError):
            return PermanentDeliveryError(
                f"The user or the delivery does not exist, or was notified: {error}"
            )
        return None

    def delivered_before(self, delivery_id: int) -> bool:
        from ..models import InAppNotification

        return InAppNotification.objects.filter(delivery_id=delivery_id).exists()


def savepoint_if_in_transaction() -> Any:
    """A failed insert must not spoil a surrounding transaction; outside one, a savepoint is waste."""
    return transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()

"""In-app notifications: a row in InAppNotification, at most one per Delivery."""

import contextlib

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction

from ..exceptions import AlreadyDelivered, InvalidRecipient, PermanentDeliveryError
from .base import BaseChannel


class InAppChannel(BaseChannel):
    """Sending is an insert that the unique InAppNotification.delivery makes happen once.

    No claim and no transaction are needed: a redelivered message runs into the constraint.
    """

    name = "in_app"
    guarded_by_constraint = True

    def clean_recipient(self, recipient):
        """Accept a user or a user's primary key; return the key."""
        user_model = get_user_model()
        if isinstance(recipient, user_model):
            if recipient.pk is None:
                raise InvalidRecipient("The user must be saved before they can be notified.")
            return str(recipient.pk)
        if isinstance(recipient, int) and not isinstance(recipient, bool):
            return str(recipient)
        raise InvalidRecipient(f"{recipient!r} is not a user or a user id.")

    def check_template(self, template, language):
        """In-app notifications carry their own title and body."""

    def send(self, payload):
        from ..models import InAppNotification

        notification = InAppNotification(
            recipient_id=payload["recipient"],
            delivery_id=payload["delivery_id"],
            title=payload["context"]["title"],
            body=payload["context"]["body"],
            link=payload["context"]["link"],
        )
        try:
            with savepoint_if_in_transaction():
                notification.save(force_insert=True)
        except IntegrityError:
            existing = InAppNotification.objects.filter(delivery_id=payload["delivery_id"]).first()
            if existing is not None:
                raise AlreadyDelivered(str(existing.pk)) from None
            raise PermanentDeliveryError(
                f"User {payload['recipient']} or delivery {payload['delivery_id']} does not exist."
            ) from None
        return str(notification.pk)


def savepoint_if_in_transaction():
    """A failed insert must not spoil a surrounding transaction; outside one, a savepoint is waste."""
    return transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()

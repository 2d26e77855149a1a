"""In-app notifications: a row in InAppNotification, written in the same transaction as the delivery log."""

from django.contrib.auth import get_user_model

from ..exceptions import InvalidRecipient
from .base import BaseChannel


class InAppChannel(BaseChannel):
    name = "in_app"
    transactional = True

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

    def send(self, delivery, payload):
        from ..models import InAppNotification

        notification = InAppNotification.objects.create(
            recipient_id=payload["recipient"],
            delivery=delivery,
            title=payload["context"]["title"],
            body=payload["context"]["body"],
            link=payload["context"]["link"],
        )
        return str(notification.pk)

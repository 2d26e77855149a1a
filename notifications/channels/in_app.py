"""In-app notifications: a row in InAppNotification, at most one per Delivery."""

import contextlib

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from .. import statements
from ..exceptions import AlreadyDelivered, InvalidRecipient, PermanentDeliveryError
from .base import BaseChannel


class InAppChannel(BaseChannel):
    """Sending is an insert that happens once per Delivery, with no claim and no transaction.

    On PostgreSQL one statement marks the delivery sent and inserts the row, only if it was not sent
    yet. Elsewhere the unique InAppNotification.delivery stops a redelivered message.
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

    def deliver_once(self, payload):
        """Insert the notification and mark its delivery sent; AlreadyDelivered if it was before."""
        from ..models import Delivery

        if connection.vendor == "postgresql":
            inserted = insert_and_mark_sent(payload)
        else:
            inserted = self.insert(payload)
        if inserted:
            return
        if Delivery.objects.filter(pk=payload["delivery_id"], status=Delivery.Status.SENT).exists():
            raise AlreadyDelivered()
        raise missing_row(payload)

    def insert(self, payload):
        """The portable way: the insert, then the delivery update; a redelivery hits the constraint."""
        from ..delivery import mark_sent
        from ..models import InAppNotification

        try:
            with savepoint_if_in_transaction():
                InAppNotification.objects.create(
                    recipient_id=payload["recipient"], delivery_id=payload["delivery_id"], **content(payload)
                )
        except IntegrityError:
            if InAppNotification.objects.filter(delivery_id=payload["delivery_id"]).exists():
                mark_sent(payload["delivery_id"], "")  # an earlier attempt stopped between the two
                return False
            raise missing_row(payload) from None
        mark_sent(payload["delivery_id"], "", attempt=True)
        return True


INSERT_AND_MARK_SENT = """
    WITH claimed AS (
        UPDATE notifications_delivery
           SET status = %(sent)s, attempts = attempts + 1, sent_at = %(now)s,
               updated_at = %(now)s, last_error = '', error_code = ''
         WHERE id = %(delivery)s AND status <> %(sent)s
     RETURNING id
    )
    INSERT INTO notifications_inappnotification
           (recipient_id, delivery_id, title, body, link, created_at)
    SELECT %(recipient)s, id, %(title)s, %(body)s, %(link)s, %(now)s FROM claimed
    RETURNING id
"""


def insert_and_mark_sent(payload):
    """One statement, so one round trip and one commit, prepared once per connection: the worker's hot
    path on PostgreSQL.
    """
    from ..models import Delivery

    parameters = {
        "sent": Delivery.Status.SENT,
        "now": timezone.now(),
        "delivery": payload["delivery_id"],
        "recipient": int(payload["recipient"]),
        **content(payload),
    }
    try:
        with savepoint_if_in_transaction():
            return statements.execute(INSERT_AND_MARK_SENT, parameters) is not None
    except IntegrityError:
        raise missing_row(payload) from None


def content(payload):
    context = payload["context"]
    return {"title": context["title"], "body": context["body"], "link": context["link"]}


def missing_row(payload):
    return PermanentDeliveryError(
        f"User {payload['recipient']} or delivery {payload['delivery_id']} does not exist."
    )


def savepoint_if_in_transaction():
    """A failed insert must not spoil a surrounding transaction; outside one, a savepoint is waste."""
    return transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()

"""The rows tests start from: failed jobs and deliveries, built the way the project builds them."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone
from dramatiq import Message

from failedjobs.models import FailedJob
from failedjobs.signatures import error_signature
from notifications.models import Delivery
from notifications.tasks import ACTORS

PHONE = "+33612345678"


def job_message(channel: str = "sms", recipient: str = PHONE, **kwargs) -> Message:
    """A message of the channel's actor, with the keyword arguments NotificationsService gives it."""
    actor = ACTORS[channel]
    kwargs = {
        "channel": actor.queue_name,
        "recipient": recipient,
        "template": "plain",
        "context": {"text": "Bonjour"},
        "language": "en",
        "delivery_id": 1,
        **kwargs,
    }
    return actor.message(**kwargs)


def failed_job(
    channel: str = "sms",
    recipient: str = PHONE,
    *,
    message: Message | None = None,
    status: str = FailedJob.Status.FAILED,
    **fields,
) -> FailedJob:
    """A failed job holding a real encoded message, as the failed-job middleware stores one.

    ``message`` defaults to a ``job_message(channel, recipient)``; ``fields`` override the row's
    other columns (``failed_at``, ``message_id``, ...).
    """
    if message is None:
        message = job_message(channel, recipient)
    recipient = message.kwargs.get("recipient", recipient)
    error = f"Twilio error 21211: the 'To' number {recipient} is not valid"
    exception_class = fields.get("exception_class", "notifications.exceptions.PermanentDeliveryError")
    code = fields.get("error_code", "21211")
    signature = error_signature(exception_class, fields.get("exception_message", error), code)
    row = {
        "queue_name": message.queue_name,
        "actor_name": message.actor_name,
        "message_id": message.message_id,
        "message_data": message.encode(),
        "args": list(message.args),
        "kwargs": dict(message.kwargs),
        "exception_class": exception_class,
        "exception_message": error,
        "error_code": code,
        "error_signature": signature,
        "traceback": (
            "Traceback (most recent call last):\n"
            '  File "notifications/delivery.py", line 40, in deliver\n'
            f"notifications.exceptions.PermanentDeliveryError: {error}\n"
        ),
        "failed_at": timezone.now(),
        "status": status,
        **fields,
    }
    return FailedJob.objects.create(**row)


def new_delivery(
    recipient: str = PHONE, *, channel: str = "sms", template: str = "plain", **fields
) -> Delivery:
    """A Delivery row as NotificationsService creates one (queued), with ``fields`` overriding."""
    return Delivery.objects.create(channel=channel, template=template, recipient=recipient, **fields)


def staff_client(*permissions: str, username: str = "viewer") -> Client:
    """A logged-in test client of a staff user who has only these permissions (codenames)."""
    user = get_user_model().objects.create_user(username, password="x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=permissions))
    client = Client()
    client.force_login(user)
    return client

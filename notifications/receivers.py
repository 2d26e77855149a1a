"""How notifications follows its messages through failedjobs: failedjobs knows nothing of deliveries.

Connected in NotificationsConfig.ready().
"""

from typing import Any

from dramatiq import Message

from .exceptions import TransientDeliveryError
from .models import Delivery
from .startup import log_mode
from .tasks import ACTOR_NAMES


def delivery_id(message: Message) -> int | None:
    if message.actor_name in ACTOR_NAMES:
        return message.kwargs.get("delivery_id")
    return None


def mark_delivery_failed(sender: Any, *, message: Message, error: str, **kwargs: Any) -> None:
    """A delivery message failed for good: its Delivery is failed, with the error that ended it."""
    pk = delivery_id(message)
    if pk is not None:
        Delivery.objects.mark_failed(pk, error)


def schedule_synchronous_retry(sender: Any, *, message: Message, exception: Any, **kwargs: Any) -> bool:
    """A delivery run in the caller failed in a way worth retrying: it is scheduled again, on the
    workers' backoff, instead of becoming a failed job at once."""
    pk = delivery_id(message)
    if pk is None or not isinstance(exception, TransientDeliveryError):
        return False
    return Delivery.objects.schedule_retry(pk, exception.delay)


def requeue_deliveries(sender: Any, *, messages: list[Message], **kwargs: Any) -> None:
    """An operator retries failed delivery messages: their deliveries are waiting again."""
    pks = [pk for pk in map(delivery_id, messages) if pk is not None]
    if pks:
        Delivery.objects.requeue(pks)


def log_scheduler_mode(sender: Any, **kwargs: Any) -> None:
    """The scheduler says once, as the web and worker processes do, which mode it runs in."""
    log_mode("scheduler")

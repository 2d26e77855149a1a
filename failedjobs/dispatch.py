"""Getting a message to a worker, or running it here when there is no queue to put it on.

With QUEUE_ENABLED off, or while the broker cannot be reached, a message runs in the calling process,
and a failure there is filed like a worker's: through services.fail_message.
"""

import logging
import time
from collections.abc import Sequence

import dramatiq
import redis
from dramatiq import Message
from dramatiq.errors import BrokerConnectionError

from .conf import setting

logger = logging.getLogger(__name__)

#: Errors that mean the broker cannot be reached.
UNREACHABLE = (redis.RedisError, BrokerConnectionError)
_broker_down_until = 0.0


def send(message: Message) -> None:
    """Enqueue the message; run it synchronously when the queue is off or the broker is unreachable."""
    if not queue_available():
        run_now(message)
        return
    try:
        dramatiq.get_broker().enqueue(message)
    except UNREACHABLE as error:
        broker_failed(error)
        run_now(message)


def enqueue_many(messages: Sequence[Message]) -> list[Message]:
    """Enqueue a batch, with the broker's ``enqueue_many`` where it has one (one round trip, not one
    each); return the messages that could not be, for the caller to run when it sees fit.
    """
    if not queue_available():
        return list(messages)
    broker = dramatiq.get_broker()
    try:
        if hasattr(broker, "enqueue_many"):
            broker.enqueue_many(messages)
        else:
            for message in messages:
                broker.enqueue(message)
    except UNREACHABLE as error:
        # Some may have gone through; the second copy of a message must be harmless to its actor
        # (a notification's Delivery row stops it from being sent twice).
        broker_failed(error)
        return list(messages)
    return []


def queue_available() -> bool:
    return setting("QUEUE_ENABLED") and time.monotonic() >= _broker_down_until


def broker_failed(error: Exception) -> None:
    global _broker_down_until
    retry_after = setting("FAILED_JOBS_BROKER_RETRY_AFTER_S")
    _broker_down_until = time.monotonic() + retry_after
    logger.warning(
        "The broker is unreachable (%s); running messages synchronously for the next %.0f s.",
        error,
        retry_after,
    )


def run_now(message: Message) -> None:
    """Run the message's actor in this process; a failure is filed as a failed job, never raised."""
    from .models import FailedJob
    from .services import fail_message

    actor = dramatiq.get_broker().get_actor(message.actor_name)
    try:
        actor.fn(*message.args, **message.kwargs)
    except Exception as error:
        logger.exception("Synchronous run of message %s failed.", message.message_id)
        fail_message(message, error, attempts=1, source=FailedJob.Source.SYNCHRONOUS)

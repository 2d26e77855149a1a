"""Getting a message to a worker, or running it here when there is no queue to put it on.

With QUEUE_ENABLED off, or while the broker cannot be reached, a message runs in the calling process,
and a failure there is filed like a worker's: through services.fail_message.
"""

import logging
import time
from collections.abc import Sequence
from contextvars import ContextVar

import dramatiq
import redis
from dramatiq import Message
from dramatiq.errors import BrokerConnectionError

from .conf import setting
from .signals import synchronous_run_failed

logger = logging.getLogger(__name__)

#: Errors that mean the broker cannot be reached.
UNREACHABLE = (redis.RedisError, BrokerConnectionError)
_broker_down_until = 0.0
_running_here: ContextVar[bool] = ContextVar("running_here", default=False)


def send(message: Message) -> bool:
    """Enqueue the message; run it synchronously when the queue is off or the broker is unreachable.

    Returns True when it ran here.
    """
    if not queue_available():
        run_now(message)
        return True
    try:
        dramatiq.get_broker().enqueue(message)
    except UNREACHABLE as error:
        broker_failed(error)
        run_now(message)
        return True
    return False


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
    """Run the message's actor in this process; a failure is never raised.

    A failure goes to the listeners of ``synchronous_run_failed`` first: one that answers True has
    taken it over (the notifications app schedules a retry); otherwise it is filed as a failed job.
    """
    from .models import FailedJob
    from .services import fail_message, underlying_error

    actor = dramatiq.get_broker().get_actor(message.actor_name)
    token = _running_here.set(True)
    try:
        actor.fn(*message.args, **message.kwargs)
    except Exception as error:
        if taken_over(message, underlying_error(error)):
            return
        logger.exception("Synchronous run of message %s failed.", message.message_id)
        fail_message(message, error, attempts=1, source=FailedJob.Source.SYNCHRONOUS)
    finally:
        _running_here.reset(token)


def taken_over(message: Message, error: BaseException | None) -> bool:
    responses = synchronous_run_failed.send(sender=Message, message=message, exception=error)
    return any(response is True for _, response in responses)


def running_here() -> bool:
    """True inside run_now: a caller (a web request) waits for this run."""
    return _running_here.get()

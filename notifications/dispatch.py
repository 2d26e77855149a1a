"""Getting a built message to a worker, or running it here when there is no queue to put it on."""

import logging
import time

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

#: After Redis fails, callers go straight to synchronous delivery for this long instead of each
#: waiting for a connection timeout.
REDIS_RETRY_AFTER_S = 5.0
_redis_down_until = 0.0


def send(actor, message):
    """Enqueue the message; deliver it synchronously when the queue is off or Redis cannot be reached."""
    global _redis_down_until
    if not settings.QUEUE_ENABLED:
        return run_now(actor, message)
    if time.monotonic() < _redis_down_until:
        return run_now(actor, message)
    try:
        actor.broker.enqueue(message)
    except redis.RedisError as error:
        _redis_down_until = time.monotonic() + REDIS_RETRY_AFTER_S
        logger.warning(
            "Redis is unreachable (%s); delivering message %s (%s) synchronously, and the next ones "
            "for %.0f s.",
            error,
            message.message_id,
            message.actor_name,
            REDIS_RETRY_AFTER_S,
        )
        run_now(actor, message)
    return None


def send_many(broker, messages):
    """Send a batch (failed jobs being retried): one Redis round trip instead of one per message."""
    global _redis_down_until
    if settings.QUEUE_ENABLED and hasattr(broker, "enqueue_many") and time.monotonic() >= _redis_down_until:
        try:
            return broker.enqueue_many(messages)
        except redis.RedisError as error:
            # Some may have gone through; a second copy of a message is harmless, the Delivery
            # row stops it from being sent twice.
            _redis_down_until = time.monotonic() + REDIS_RETRY_AFTER_S
            logger.warning("Redis failed during a batch enqueue (%s); delivering synchronously.", error)
    for message in messages:
        send(broker.get_actor(message.actor_name), message)
    return None


def run_now(actor, message):
    """Run the actor in this process. A failure is recorded as a failed job, never raised to the caller."""
    from failedjobs.models import FailedJob
    from failedjobs.services import record_failure

    from .delivery import mark_failed

    try:
        actor.fn(*message.args, **message.kwargs)
    except Exception as error:
        logger.exception("Synchronous delivery of message %s failed.", message.message_id)
        if "delivery_id" in message.kwargs:
            mark_failed(message.kwargs["delivery_id"], error)
        record_failure(message, error, attempts=1, source=FailedJob.Source.SYNCHRONOUS)

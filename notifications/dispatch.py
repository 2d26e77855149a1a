"""Getting a built message to a worker, or running it here when there is no queue to put it on."""

import logging
import time
import uuid

import redis
from django.conf import settings
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis

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
    if settings.QUEUE_ENABLED and isinstance(broker, RedisBroker) and time.monotonic() >= _redis_down_until:
        try:
            return enqueue_pipelined(broker, messages)
        except redis.RedisError as error:
            # Some may have gone through; a second copy of a message is harmless, the Delivery
            # row stops it from being sent twice.
            _redis_down_until = time.monotonic() + REDIS_RETRY_AFTER_S
            logger.warning("Redis failed during a batch enqueue (%s); delivering synchronously.", error)
    for message in messages:
        send(broker.get_actor(message.actor_name), message)
    return None


def enqueue_pipelined(broker, messages):
    """RedisBroker.enqueue for many messages through one pipeline.

    Mirrors dramatiq 2.2's RedisBroker.enqueue and the arguments of its dispatch script; the version
    is pinned in requirements.txt, and the retry tests consume what this enqueues.
    """
    pipeline = broker.client.pipeline(transaction=False)
    dispatch = broker.scripts["dispatch"]
    max_unpack_size = broker._max_unpack_size()
    enqueued = []
    for message in messages:
        message = message.copy(options={"redis_message_id": str(uuid.uuid4())})
        broker.emit_before("enqueue", message, None)
        arguments = [
            "enqueue",
            current_millis(),
            message.queue_name,
            broker.broker_id,
            broker.heartbeat_timeout,
            broker.dead_message_ttl,
            0,  # no maintenance from inside a pipeline
            max_unpack_size,
            message.options["redis_message_id"],
            message.encode(),
        ]
        dispatch(keys=[broker.namespace], args=arguments, client=pipeline)
        enqueued.append(message)
    pipeline.execute()
    for message in enqueued:
        broker.emit_after("enqueue", message, None)


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

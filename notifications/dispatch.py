"""Getting a built message to a worker, or running it here when there is no queue to put it on."""

import logging

import redis
from django.conf import settings

logger = logging.getLogger(__name__)


def send(actor, message):
    """Enqueue the message; deliver it synchronously when the queue is off or Redis cannot be reached."""
    if not settings.QUEUE_ENABLED:
        return run_now(actor, message)
    try:
        actor.broker.enqueue(message)
    except redis.RedisError as error:
        logger.warning(
            "Redis is unreachable (%s); delivering message %s (%s) synchronously.",
            error,
            message.message_id,
            message.actor_name,
        )
        run_now(actor, message)
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

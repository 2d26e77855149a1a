import logging
import os

import dramatiq
import redis
from django_dramatiq.management.commands.rundramatiq import Command as DramatiqCommand

from notifications.broker import persistence_warnings
from notifications.startup import log_mode

logger = logging.getLogger("notifications.broker")


class Command(DramatiqCommand):
    """django_dramatiq's rundramatiq, which also says at start when Redis could lose queued messages,
    and whose workers format tracebacks without Python's position markers.

    Every failed attempt formats its traceback (Dramatiq's Retries keeps it with the message). Python
    3.11 re-parses each line of it to draw the ^^^ markers under the failing expression, which was a
    sixth of a worker's CPU in a failure storm (bench W2). PYTHONNODEBUGRANGES=1 drops them, for the
    worker processes only; set PYTHONNODEBUGRANGES to an empty value to keep them.
    """

    def handle(self, *args, **options):
        log_mode("worker")
        warn_about_redis_persistence()
        os.environ.setdefault("PYTHONNODEBUGRANGES", "1")
        return super().handle(*args, **options)


def warn_about_redis_persistence() -> None:
    client = getattr(dramatiq.get_broker(), "client", None)
    if client is None:
        return
    try:
        warnings = persistence_warnings(client)
    except redis.RedisError as error:
        logger.warning("Could not read Redis's configuration: %s", error)
        return
    for warning in warnings:
        logger.warning(warning)

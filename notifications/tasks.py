"""One thin actor per channel, each on its own queue so that it can be scaled and throttled alone.

The actors are where Dramatiq meets the domain: a TransientDeliveryError becomes ``dramatiq.Retry``
(with the provider's Retry-After as its delay), and a PermanentDeliveryError is one the actor
``throws``, so it is not retried.
"""

from collections.abc import Callable
from typing import Any

import dramatiq
from periodiq import cron

from . import broker, gate, outbox
from .channels import BaseChannel, all_channels
from .conf import setting
from .exceptions import PermanentDeliveryError, TransientDeliveryError


def retry_options() -> dict[str, Any]:
    return {
        "max_retries": setting("NOTIFICATIONS_MAX_RETRIES"),
        "min_backoff": setting("NOTIFICATIONS_MIN_BACKOFF_MS"),
        "max_backoff": setting("NOTIFICATIONS_MAX_BACKOFF_MS"),
        "time_limit": setting("NOTIFICATIONS_TIME_LIMIT_MS"),
        "throws": (PermanentDeliveryError,),
    }


def delivery_function(channel: BaseChannel) -> Callable[..., None]:
    def deliver(**payload: Any) -> None:
        try:
            gate.deliver(channel, payload)  # type: ignore[arg-type]
        except TransientDeliveryError as error:
            # An expected failure goes without its traceback: Retries formats one at every attempt.
            cause = error.without_traceback() if error.expected else error
            raise dramatiq.Retry(str(error), delay=error.delay) from cause

    deliver.__name__ = deliver.__qualname__ = channel.actor_name
    return deliver


def declare_actor(channel: BaseChannel) -> dramatiq.Actor:
    declare = dramatiq.actor(actor_name=channel.actor_name, queue_name=channel.queue_name, **retry_options())
    return declare(delivery_function(channel))


#: The actor of each channel, by channel name.
ACTORS: dict[str, dramatiq.Actor] = {channel.name: declare_actor(channel) for channel in all_channels()}
ACTOR_NAMES = frozenset(actor.actor_name for actor in ACTORS.values())


@dramatiq.actor(queue_name="maintenance", periodic=cron("* * * * *"), max_retries=0)
def redeliver_orphaned_messages() -> None:
    """Every minute: a dead worker's unfinished messages go back to their queues."""
    broker.redeliver_orphaned_messages(dramatiq.get_broker())


@dramatiq.actor(queue_name="maintenance", periodic=cron("* * * * *"), max_retries=0)
def dispatch_due() -> None:
    """Every minute: scheduled deliveries that are due, queued ones whose message was lost, and held
    ones whose circuit breaker closed."""
    from .status import record_scheduler_tick

    record_scheduler_tick()
    outbox.dispatch_due()
    gate.release_when_closed()


# An hour: a first purge of a large log can take longer than Dramatiq's default 10 minutes. Each batch
# commits on its own, so a run that is stopped keeps what it deleted and the next night goes on.
@dramatiq.actor(queue_name="maintenance", periodic=cron("37 3 * * *"), max_retries=0, time_limit=3_600_000)
def purge_notifications() -> None:
    """Every night: apply the retention settings (NOTIFICATIONS_DELIVERY_RETENTION_DAYS and
    NOTIFICATIONS_READ_INAPP_RETENTION_DAYS) to the delivery log and the read in-app notifications."""
    from . import retention

    retention.purge_notifications()

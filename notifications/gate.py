"""What stands between a worker and a provider: the provider's circuit breaker and the channel's limits.

``deliver`` runs one delivery through them. A message that may not go now waits: the worker puts it
back on the broker with a delay and acks it, keeping its retries and attempts as they were, so a
message held through an outage or a burst neither fails nor spends an attempt. It needs Dramatiq's
``CurrentMessage`` middleware (to know which message to put back); without it, and outside a worker
(the queue off), deliveries are not held.
"""

import logging
import random
import time
from functools import cache
from typing import Any

import dramatiq
import redis
from django.utils import timezone
from dramatiq.middleware import CurrentMessage

from failedjobs.dispatch import running_here

from . import breaker, limits
from .channels import BaseChannel
from .conf import setting
from .exceptions import DeliveryError, TransientDeliveryError
from .payload import Payload

logger = logging.getLogger("notifications.delivery")

#: A message held by a limit again and again waits up to this much longer, at random.
MAX_SPREAD_MS = 16_000
#: A message held by an open breaker waits until the probe is due, plus up to this, at random.
BREAKER_SPREAD_MS = 1000


class Held(Exception):
    """The message may not go now: try again in ``delay`` ms, plus up to ``spread`` ms at random."""

    def __init__(self, reason: str, delay: int, spread: int) -> None:
        super().__init__(reason)
        self.delay = delay
        self.spread = spread


def deliver(channel: BaseChannel, payload: Payload) -> str | None:
    """Deliver through the gate, or put the message back to wait; returns what ``channel.deliver`` does."""
    message = CurrentMessage.get_current_message()
    client = breaker.redis_client()
    # Only a worker running this very message holds it; a synchronous run goes straight through.
    if message is None or client is None or message.actor_name != channel.actor_name or running_here():
        return channel.deliver(payload)
    try:
        return guarded(channel, payload, client, held_before=message.options.get("held", 0))
    except Held as held:
        still_waiting(message, payload["delivery_id"])
        hold(message, held)
        return None


def guarded(
    channel: BaseChannel, payload: Payload, client: redis.Redis, *, held_before: int = 0
) -> str | None:
    circuit = None
    if channel.provider and breaker.enabled():
        circuit = breaker.get_breaker(channel.provider, client)
    probe = failing = False
    if circuit is not None:
        decision, delay, failing = circuit.check()
        if decision == breaker.HOLD:
            # Back about when the probe is due: the messages held come back together, once a period.
            raise Held(f"the {channel.provider} circuit breaker is open", delay, BREAKER_SPREAD_MS)
        probe = decision == breaker.PROBE
    tokens: list[tuple[limits.Limit, str]] = []
    try:
        for limit in channel_limits(channel.name, client):
            token, wait = limit.acquire()
            if token is None:
                # A crowd over a limit spreads out more each time, so that it does not churn.
                spread = min(MAX_SPREAD_MS, 250 * 2 ** min(held_before, 10))
                raise Held(f"over the {channel.name} limit of {limit.limit}", wait, spread)
            tokens.append((limit, token))
        return delivered(channel, payload, circuit, probe=probe, failing=failing)
    except Held:
        if probe and circuit is not None:
            circuit.release_probe()
        raise
    finally:
        for limit, token in tokens:
            limit.release(token)


def delivered(
    channel: BaseChannel,
    payload: Payload,
    circuit: breaker.CircuitBreaker | None,
    *,
    probe: bool,
    failing: bool,
) -> str | None:
    """Deliver, and tell the breaker whether the provider answered."""
    if circuit is None:
        return channel.deliver(payload)
    try:
        provider_message_id = channel.deliver(payload)
    except DeliveryError as error:
        if isinstance(error, TransientDeliveryError) and error.provider:
            if circuit.failed(probe=probe) and error.delay is None:
                # Its retry comes when the probe is due, not after a backoff that may outlast the outage.
                open_ms = int(setting("NOTIFICATIONS_BREAKER_OPEN_S") * 1000)
                error.delay = open_ms + random.randint(0, BREAKER_SPREAD_MS)
        elif error.provider and (probe or failing):
            circuit.answered()
        elif probe:
            circuit.release_probe()
        raise
    except BaseException:
        if probe:
            circuit.release_probe()
        raise
    if provider_message_id is not None and (probe or failing):
        circuit.answered()
    elif probe:
        circuit.release_probe()
    return provider_message_id


def channel_limits(channel_name: str, client: redis.Redis) -> list[limits.Limit]:
    concurrency = setting("NOTIFICATIONS_CONCURRENCY").get(channel_name)
    rate = setting("NOTIFICATIONS_RATE_LIMITS").get(channel_name)
    if not concurrency and not rate:
        return []
    return configured_limits(channel_name, concurrency, rate, client)


@cache
def configured_limits(channel_name: str, concurrency: int | None, rate: int | None, client: Any) -> list:
    """One set of Limit objects (and their registered scripts) per configuration."""
    return limits.channel_limits(client, channel_name, concurrency=concurrency, rate=rate)


def hold(message: Any, held: Held) -> None:
    """Put the message back with a delay: same id, same retries, the attempt not counted."""
    options = message.options
    times = options.get("held", 0) + 1
    options["held"] = times
    # FailedJobMiddleware counted this run as an attempt; it was not one.
    if options.get("attempts"):
        options["attempts"] -= 1
    delay = held.delay + random.randint(0, held.spread)
    logger.debug("Message %s waits %s ms: %s.", message.message_id, delay, held)
    dramatiq.get_broker().enqueue(message, delay=delay)


def still_waiting(message: Any, delivery_id: int) -> None:
    """Touch the row now and then, so that the dispatcher does not take a message held for long for a
    lost one (it looks for queued rows untouched for NOTIFICATIONS_REDRIVE_AFTER_S)."""
    from .models import Delivery

    now_ms = int(time.time() * 1000)
    touched_ms = message.options.get("row_touched_at") or message.message_timestamp
    if now_ms - touched_ms < setting("NOTIFICATIONS_REDRIVE_AFTER_S") * 1000 / 2:
        return
    Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.QUEUED).update(updated_at=timezone.now())
    message.options["row_touched_at"] = now_ms


def configured() -> bool:
    """True when a breaker or a limit is on, so that deliveries may be held."""
    return (
        breaker.enabled()
        or bool(setting("NOTIFICATIONS_RATE_LIMITS"))
        or bool(setting("NOTIFICATIONS_CONCURRENCY"))
    )

"""What stands between a worker and a provider: the provider's circuit breaker and the channel's limits.

``deliver`` runs one delivery through them. A message that may not go now waits, neither failing
nor spending an attempt:

- over a limit, the worker puts it back on the broker with a delay and acks it, keeping its retries
  and attempts as they were;
- behind an open breaker, one message a period waits so, to come back when the probe is due (the
  carrier); the others are put aside in the database (status ``held``) and acked, so that an outage
  costs each of them one pass through a worker, not one every probe period. When the breaker closes,
  the process that closed it sends them again (``release_held``), and the scheduler's every-minute
  job does what a process that died left undone, and lets one go as the probe when none carries it.

It needs Dramatiq's ``CurrentMessage`` middleware (to know which message to put back); without it,
and outside a worker (the queue off), deliveries are not held.
"""

import logging
import random
import time
from functools import cache
from typing import Any

import dramatiq
import redis
from django.db.models import Count
from django.utils import timezone
from dramatiq.middleware import CurrentMessage

from failedjobs.dispatch import running_here

from . import breaker, limits, outbox
from .channels import BaseChannel, all_channels
from .conf import setting
from .exceptions import DeliveryError, TransientDeliveryError
from .models import Delivery
from .payload import Payload

logger = logging.getLogger("notifications.delivery")

#: A message held by a limit again and again waits up to this much longer, at random.
MAX_SPREAD_MS = 16_000
#: A message held by an open breaker waits until the probe is due, plus up to this, at random.
BREAKER_SPREAD_MS = 1000
#: The options a held message carries (see ``hold``), which a failed job's retry starts without.
RUNTIME_OPTIONS = ("held", "carrier", "row_touched_at")
#: Deliveries sent again in one batch when a breaker closes, and for how long the process that
#: closed it goes on (the scheduler's job takes over the rest).
RELEASE_BATCH = 500
RELEASE_BUDGET_S = 10.0


class Held(Exception):
    """The message may not go now: try again in ``delay`` ms, plus up to ``spread`` ms at random, or,
    when ``aside``, hold its delivery in the database until the breaker closes."""

    def __init__(
        self, reason: str, delay: int, spread: int, *, aside: bool = False, carrier: bool = False
    ) -> None:
        super().__init__(reason)
        self.delay = delay
        self.spread = spread
        self.aside = aside
        self.carrier = carrier


def deliver(channel: BaseChannel, payload: Payload) -> str | None:
    """Deliver through the gate, or put the message back to wait; returns what ``channel.deliver`` does."""
    message = CurrentMessage.get_current_message()
    client = breaker.redis_client()
    # Only a worker running this very message holds it; a synchronous run goes straight through.
    if message is None or client is None or message.actor_name != channel.actor_name or running_here():
        return channel.deliver(payload)
    options = message.options
    try:
        held_before, carrier = options.get("held", 0), bool(options.get("carrier"))
        return guarded(channel, payload, client, held_before=held_before, carrier=carrier)
    except Held as held:
        # Not queued any more (cancelled, say): it waits as it is, and its claim decides.
        if held.aside and Delivery.objects.hold(payload["delivery_id"]):
            if still_open(channel, client):
                return None
            # It closed meanwhile, and what it held may have been sent again before this row was:
            # this one goes back to its queue.
            Delivery.objects.filter(pk=payload["delivery_id"], status=Delivery.Status.HELD).update(
                status=Delivery.Status.QUEUED, updated_at=timezone.now()
            )
            held = Held("its circuit breaker closed", 0, 0)
        still_waiting(message, payload["delivery_id"])
        hold(message, held)
        return None


def still_open(channel: BaseChannel, client: redis.Redis) -> bool:
    """Whether the channel's breaker still holds (open, half-open or forced open), asking Redis."""
    return breaker.get_breaker(channel.provider, client).status().state != "closed"


def guarded(
    channel: BaseChannel,
    payload: Payload,
    client: redis.Redis,
    *,
    held_before: int = 0,
    carrier: bool = False,
) -> str | None:
    circuit = None
    if channel.provider and breaker.enabled():
        circuit = breaker.get_breaker(channel.provider, client)
    probe = failing = False
    if circuit is not None:
        decision, delay, failing = circuit.check()
        if decision == breaker.HOLD:
            carries = circuit.take_carrier(delay + BREAKER_SPREAD_MS, again=carrier)
            reason = f"the {channel.provider} circuit breaker is open"
            raise Held(reason, delay, BREAKER_SPREAD_MS, aside=not carries, carrier=carries)
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
            closed(circuit)
        elif probe:
            circuit.release_probe()
        raise
    except BaseException:
        if probe:
            circuit.release_probe()
        raise
    if provider_message_id is not None and (probe or failing):
        closed(circuit)
    elif probe:
        circuit.release_probe()
    return provider_message_id


def closed(circuit: breaker.CircuitBreaker) -> None:
    """The provider answered: close its breaker, and send again what it held."""
    if circuit.answered():
        release_held(circuit.provider)


def release_held(provider: str, *, limit: int | None = None, budget_s: float = RELEASE_BUDGET_S) -> int:
    """Send again the deliveries held for the provider's breaker, the longest held first: all of
    them, or ``limit``, as far as ``budget_s`` allows. Returns how many."""
    channels = [channel.name for channel in all_channels() if channel.provider == provider]
    held = Delivery.objects.filter(status=Delivery.Status.HELD, channel__in=channels).order_by("updated_at")
    released, started = 0, time.monotonic()
    while limit is None or released < limit:
        batch = RELEASE_BATCH if limit is None else min(RELEASE_BATCH, limit - released)
        taken = outbox.dispatch_batch(held, batch)
        released += taken
        if taken < batch or time.monotonic() - started > budget_s:
            break
    if released:
        logger.info("Sent again %s deliveries held by the %s circuit breaker.", released, provider)
    return released


def release_when_closed(*, budget_s: float = RELEASE_BUDGET_S) -> dict[str, int]:
    """The scheduler's every-minute job: held deliveries of a closed breaker (or of breakers turned
    off) go again; a half-open one gets one of them as its probe. Returns the releases by provider."""
    client = breaker.redis_client()
    released = {}
    for provider in breaker.providers():
        if client is None or not breaker.enabled():
            state = "closed"
        else:
            state = breaker.get_breaker(provider, client).status().state
        if state == "closed":
            released[provider] = release_held(provider, budget_s=budget_s)
        elif state == "half-open":
            released[provider] = release_held(provider, limit=1)
    return {provider: count for provider, count in released.items() if count}


def queue_pause_ms(queue_name: str) -> int:
    """How long a worker need not take messages from a queue: while its provider's breaker is open,
    they would only be held (see broker.WakingConsumer). 0 when they may go."""
    provider = queue_providers().get(queue_name)
    client = breaker.redis_client()
    if provider is None or client is None or not breaker.enabled():
        return 0
    return breaker.get_breaker(provider, client).paused_ms()


@cache
def queue_providers() -> dict[str, str]:
    return {channel.queue_name: channel.provider for channel in all_channels() if channel.provider}


def breaker_statuses() -> list[breaker.Status]:
    """Every provider's breaker, with the number of deliveries held for it."""
    providers = {channel.name: channel.provider for channel in all_channels()}
    held: dict[str, int] = {}
    rows = Delivery.objects.filter(status=Delivery.Status.HELD).values("channel").annotate(n=Count("id"))
    for row in rows.order_by():
        provider = providers.get(row["channel"])
        if provider:
            held[provider] = held.get(provider, 0) + row["n"]
    statuses = breaker.statuses()
    for status in statuses:
        status.held = held.get(status.provider, 0)
    return statuses


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
    if held.carrier:
        options["carrier"] = True
    else:
        options.pop("carrier", None)
    # FailedJobMiddleware counted this run as an attempt; it was not one.
    if options.get("attempts"):
        options["attempts"] -= 1
    delay = held.delay + random.randint(0, held.spread)
    logger.debug("Message %s waits %s ms: %s.", message.message_id, delay, held)
    dramatiq.get_broker().enqueue(message, delay=delay)


def still_waiting(message: Any, delivery_id: int) -> None:
    """Touch the row now and then, so that the dispatcher does not take a message held for long for a
    lost one (it looks for queued rows untouched for NOTIFICATIONS_REDRIVE_AFTER_S)."""
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

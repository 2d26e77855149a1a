"""A circuit breaker per provider (Twilio, the email backend), shared by every worker through Redis.

Closed, messages go. After NOTIFICATIONS_BREAKER_THRESHOLD transient provider failures in a row,
within NOTIFICATIONS_BREAKER_WINDOW_S, it opens: for NOTIFICATIONS_BREAKER_OPEN_S no message of
the provider is attempted (they wait, see gate.py). Then it is half-open: one message, the probe,
is let through. If the provider answers it (accepted, or refused for good), the breaker closes;
if it fails again, it opens for another period. Any answer from the provider closes it and ends a
run of failures; permanent errors (an invalid number) are answers, so they never trip it.

An operator can force it open or closed, and give it back to the automatic mode
(``manage.py circuit_breaker``). Each change of state is logged, by the process that made it.

Keys, under ``notifications:breaker:<provider>:``: ``mode`` (forced "open" or "closed"; absent:
automatic), ``open`` (exists while open, expires when the probe is due), ``tripped`` (from opening
to closing), ``failures`` (the current run, expires after the window), ``probe`` (the probe in
flight), ``carrier`` (taken by the one held message a period that comes back for the probe).
"""

import logging
import time
from dataclasses import dataclass
from typing import Any

import dramatiq
import redis

from .conf import setting

logger = logging.getLogger("notifications.breaker")

PREFIX = "notifications:breaker"
MODES = ("auto", "open", "closed")
#: The outcome of ``check``: send, send as the half-open probe, or hold for ``delay`` ms.
GO, PROBE, HOLD = "go", "probe", "hold"
#: While a probe is in flight, the others wait this long (ms) before they look again.
PROBE_WAIT_MS = 1000
#: A process that found the breaker open believes it for up to this long (ms) without asking Redis
#: again: a crowd of held messages costs one round trip a second, and an operator's --close is seen
#: within a second.
LOCAL_MEMORY_MS = 1000

# KEYS: mode, open, tripped, probe, failures. ARGV: open_ms, probe_ttl_ms. Returns the decision, the
# delay (-1: while the probe is in flight) and whether a run of failures is under way.
CHECK = """
local mode = redis.call('GET', KEYS[1])
if mode == 'closed' then return {'go', 0, 0} end
if mode == 'open' then return {'hold', tonumber(ARGV[1]), 1} end
local ttl = redis.call('PTTL', KEYS[2])
if ttl > 0 then return {'hold', ttl, 1} end
if redis.call('EXISTS', KEYS[3]) == 0 then return {'go', 0, redis.call('EXISTS', KEYS[5])} end
if redis.call('SET', KEYS[4], '1', 'NX', 'PX', ARGV[2]) then return {'probe', 0, 1} end
return {'hold', -1, 1}
"""

# KEYS: failures, open, tripped, probe. ARGV: threshold, window_ms, open_ms, was the probe (0/1).
FAILURE = """
if ARGV[4] == '1' then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[4])
  return 'reopened'
end
if redis.call('EXISTS', KEYS[3]) == 1 then return 'open' end
local run = redis.call('INCR', KEYS[1])
if run == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if run >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('SET', KEYS[3], '1')
  redis.call('DEL', KEYS[1])
  return 'opened'
end
return 'closed'
"""

# KEYS: failures, open, tripped, probe. Returns 1 when this closed a tripped breaker.
ANSWERED = """
local was_tripped = redis.call('DEL', KEYS[3])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
return was_tripped
"""


@dataclass
class Status:
    provider: str
    state: str  # closed, open or half-open
    mode: str  # auto, or forced open or closed
    failures: int  # the current run of transient failures
    probe_in_s: float | None  # while open in automatic mode: seconds until the probe
    held: int | None = None  # deliveries held in the database until it closes, when counted

    def __str__(self) -> str:
        text = f"{self.provider}: {self.state}"
        if self.mode != "auto":
            text += f" (forced {self.mode})"
        elif self.probe_in_s is not None:
            text += f", probe in {self.probe_in_s:.1f} s"
        text += f", {self.failures} transient failure(s) in the current run"
        return text if self.held is None else text + f", {self.held} deliveries held"


def redis_client() -> redis.Redis | None:
    """The broker's Redis client; None on a broker without Redis (the stub broker in tests)."""
    return getattr(dramatiq.get_broker(), "client", None)


def enabled() -> bool:
    return setting("NOTIFICATIONS_BREAKER_THRESHOLD") > 0


class CircuitBreaker:
    def __init__(self, provider: str, client: redis.Redis) -> None:
        self.provider = provider
        self.client = client
        keys = ("mode", "open", "tripped", "probe", "failures", "carrier")
        self.keys = {name: f"{PREFIX}:{provider}:{name}" for name in keys}
        self.check_script = client.register_script(CHECK)
        self.failure_script = client.register_script(FAILURE)
        self.answered_script = client.register_script(ANSWERED)
        # What this process last heard of an open breaker: until when to hold without asking Redis
        # (time.monotonic()), and until when the breaker said to hold.
        self.ask_again_at = self.hold_until = 0.0
        # Until when (time.monotonic()) this process knows that another message carries the probe,
        # and that the breaker was closed when its consumers last asked (paused_ms).
        self.carried_until = self.closed_until = 0.0

    def key_list(self, *names: str) -> list[str]:
        return [self.keys[name] for name in names]

    def check(self) -> tuple[str, int, bool]:
        """(GO, 0, _), (PROBE, 0, _): this attempt is the probe, or (HOLD, ms to wait, _); the last
        item says whether a run of failures is under way (an answer must then end it)."""
        now = time.monotonic()
        if now < self.ask_again_at:
            return HOLD, max(1, int((self.hold_until - now) * 1000)), True
        open_ms = setting("NOTIFICATIONS_BREAKER_OPEN_S") * 1000
        probe_ttl_ms = setting("NOTIFICATIONS_TIME_LIMIT_MS")
        keys = self.key_list("mode", "open", "tripped", "probe", "failures")
        decision, delay, failing = self.check_script(keys=keys, args=[int(open_ms), probe_ttl_ms])
        decision = decision.decode()
        if decision == HOLD and delay > 0:
            self.ask_again_at = now + min(delay, LOCAL_MEMORY_MS) / 1000
            self.hold_until = now + delay / 1000
        if decision == PROBE:
            logger.warning("Circuit breaker %s is half-open: one message goes as the probe.", self.provider)
        return decision, PROBE_WAIT_MS if delay < 0 else int(delay), bool(failing)

    def paused_ms(self) -> int:
        """For a queue's consumer, which need not take messages that would only be held: while the
        breaker is open (by itself or forced), ms until it may let one through; while the probe is
        in flight, a second; 0 when a message may go. Changes nothing. An open or closed breaker is
        remembered for up to a second; a half-open one is asked again each time."""
        now = time.monotonic()
        if now < self.ask_again_at:
            return max(1, int((self.hold_until - now) * 1000))
        if now < self.closed_until:
            return 0
        with self.client.pipeline(transaction=False) as pipe:
            pipe.get(self.keys["mode"])
            pipe.pttl(self.keys["open"])
            pipe.exists(self.keys["tripped"])
            pipe.exists(self.keys["probe"])
            mode, open_ms, tripped, probing = pipe.execute()
        if mode == b"open":
            open_ms = LOCAL_MEMORY_MS
        elif mode == b"closed" or (open_ms <= 0 and not tripped):
            self.closed_until = now + LOCAL_MEMORY_MS / 1000
            return 0
        elif open_ms <= 0:
            return PROBE_WAIT_MS if probing else 0
        self.ask_again_at = now + min(open_ms, LOCAL_MEMORY_MS) / 1000
        self.hold_until = now + open_ms / 1000
        return int(open_ms)

    def take_carrier(self, ttl_ms: int, *, again: bool = False) -> bool:
        """True for one held message a period: it waits ``ttl_ms`` for the probe; the others are
        put aside until the breaker closes (see gate.py). The carrier back too early (``again``)
        stays the carrier."""
        now = time.monotonic()
        if not again and now < self.carried_until:
            return False
        if self.client.set(self.keys["carrier"], "1", nx=not again, px=max(1, ttl_ms)):
            return True
        self.carried_until = now + LOCAL_MEMORY_MS / 1000
        return False

    def failed(self, *, probe: bool) -> bool:
        """A transient failure of the provider: one more in the run, or the probe failed. True when
        the breaker is open now."""
        threshold = setting("NOTIFICATIONS_BREAKER_THRESHOLD")
        window_ms = int(setting("NOTIFICATIONS_BREAKER_WINDOW_S") * 1000)
        open_s = setting("NOTIFICATIONS_BREAKER_OPEN_S")
        keys = self.key_list("failures", "open", "tripped", "probe")
        args = [threshold, window_ms, int(open_s * 1000), int(probe)]
        change = self.failure_script(keys=keys, args=args).decode()
        if change == "opened":
            logger.warning(
                "Circuit breaker %s opened after %s transient failures in a row: its messages wait; "
                "a probe goes in %s s.",
                self.provider,
                threshold,
                open_s,
            )
        elif change == "reopened":
            logger.warning("Circuit breaker %s: the probe failed; open for %s s more.", self.provider, open_s)
        return change != "closed"

    def answered(self) -> bool:
        """The provider answered (accepted the message, or refused it for good): closed, run ended.
        True when this closed a tripped breaker."""
        keys = self.key_list("failures", "open", "tripped", "probe")
        if self.answered_script(keys=keys):
            logger.warning("Circuit breaker %s closed: the provider answered again.", self.provider)
            return True
        return False

    def release_probe(self) -> None:
        """The probe ended without telling anything about the provider: another message may probe."""
        self.client.delete(self.keys["probe"])

    def status(self) -> Status:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.get(self.keys["mode"])
            pipe.pttl(self.keys["open"])
            pipe.exists(self.keys["tripped"])
            pipe.get(self.keys["failures"])
            mode, open_ttl, tripped, failures = pipe.execute()
        mode = mode.decode() if mode else "auto"
        probe_in_s = None
        if mode != "auto":
            state = mode
        elif open_ttl > 0:
            state, probe_in_s = "open", open_ttl / 1000
        else:
            state = "half-open" if tripped else "closed"
        return Status(self.provider, state, mode, int(failures or 0), probe_in_s)

    def force(self, mode: str) -> Status:
        """Force the breaker "open" or "closed", or give it back to the automatic mode ("auto")."""
        if mode not in MODES:
            raise ValueError(f"Unknown circuit breaker mode {mode!r}; use one of: {', '.join(MODES)}.")
        self.ask_again_at = self.carried_until = self.closed_until = 0.0
        with self.client.pipeline() as pipe:
            if mode == "auto":
                pipe.delete(self.keys["mode"])
            else:
                pipe.set(self.keys["mode"], mode)
            if mode == "closed":
                # Closed by hand is closed for good: when given back to auto, it starts afresh.
                pipe.delete(*self.key_list("open", "tripped", "failures", "probe"))
            pipe.execute()
        logger.warning("Circuit breaker %s set to %s by an operator.", self.provider, mode)
        return self.status()


_breakers: dict[tuple[str, int], CircuitBreaker] = {}


def get_breaker(provider: str, client: redis.Redis | None = None) -> CircuitBreaker:
    """The breaker of a provider, on the broker's Redis unless told another client."""
    client = client if client is not None else redis_client()
    if client is None:
        raise RuntimeError("Circuit breakers need a Redis broker; the current broker has no Redis client.")
    key = (provider, id(client))
    if key not in _breakers:
        _breakers[key] = CircuitBreaker(provider, client)
    return _breakers[key]


def providers() -> list[str]:
    """The providers of the configured channels, each once, in the registry's order."""
    from .channels import all_channels

    found: list[str] = []
    for channel in all_channels():
        if channel.provider and channel.provider not in found:
            found.append(channel.provider)
    return found


def open_channels(client: Any = None) -> list[str]:
    """The channels whose provider's breaker holds their messages now (open, or forced open); none
    without breakers or a Redis to read them from."""
    from .channels import all_channels

    if not enabled() or (client or redis_client()) is None:
        return []
    try:
        held = {status.provider for status in statuses(client) if status.state == "open"}
    except redis.RedisError:
        return []
    return [channel.name for channel in all_channels() if channel.provider in held]


def statuses(client: Any = None) -> list[Status]:
    """The state of every provider's breaker."""
    return [get_breaker(provider, client).status() for provider in providers()]

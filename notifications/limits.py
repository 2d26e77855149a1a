"""Per-channel limits shared by every worker through Redis: messages a second, and messages at once.

NOTIFICATIONS_RATE_LIMITS = {"sms": 50}: at most 50 SMS reach Twilio in any one second, whatever
the number of workers. NOTIFICATIONS_CONCURRENCY = {"email": 4}: at most 4 emails in the hands of
the SMTP server at once. A message over a limit waits (see gate.py); it does not fail.

Both are a sorted set of the messages that hold a place, each scored with the time its place ends,
checked and taken in one Lua script on Redis's clock. Dramatiq's ``WindowRateLimiter`` counts by
whole seconds of the clock, so any second that straddles two of them can see twice the limit; here
a message keeps its place from the moment it is let through until a second after its call to the
provider has ended, so no second seen by the provider holds more than the limit, however late the
request reaches it. A worker that dies leaves its places behind only until the time limit ends.
"""

import uuid

import redis

from .conf import setting

PREFIX = "notifications:limit"

# KEYS: the set. ARGV: limit, window_ms (the rate's; 0 for concurrency), hold_ms (how long an
# unfinished place lasts), member. Returns 0 when the place is taken, else the ms to wait.
ACQUIRE = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[4])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[2]))
  return 0
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = tonumber(first[2]) - now
local longest = math.max(tonumber(ARGV[2]), 1000)
if wait > longest then wait = longest end
if wait < 1 then wait = 1 end
return wait
"""

# KEYS: the set. ARGV: window_ms, member. A rate's place lasts window_ms more; a concurrency's ends.
RELEASE = """
if tonumber(ARGV[1]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[2])
  return 0
end
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
return 0
"""


class Limit:
    """``limit`` messages at once (window_ms 0), or in any window of ``window_ms``."""

    def __init__(self, client: redis.Redis, name: str, limit: int, window_ms: int = 0) -> None:
        self.key = f"{PREFIX}:{name}"
        self.limit = limit
        self.window_ms = window_ms
        self.acquire_script = client.register_script(ACQUIRE)
        self.release_script = client.register_script(RELEASE)

    def acquire(self) -> tuple[str | None, int]:
        """(a token to release, 0) when a place was free; (None, ms to wait) when not."""
        token = uuid.uuid4().hex
        hold_ms = setting("NOTIFICATIONS_TIME_LIMIT_MS") + 1000
        wait = self.acquire_script(keys=[self.key], args=[self.limit, self.window_ms, hold_ms, token])
        return (token, 0) if wait == 0 else (None, int(wait))

    def release(self, token: str) -> None:
        self.release_script(keys=[self.key], args=[self.window_ms, token])


def channel_limits(
    client: redis.Redis, channel: str, *, concurrency: int | None, rate: int | None
) -> list[Limit]:
    """A channel's limits (NOTIFICATIONS_CONCURRENCY's, then NOTIFICATIONS_RATE_LIMITS')."""
    limits = []
    if concurrency:
        limits.append(Limit(client, f"{channel}:concurrency", int(concurrency)))
    if rate:
        limits.append(Limit(client, f"{channel}:rate", int(rate), window_ms=1000))
    return limits

"""Dramatiq's Redis broker, with workers that wake up when a message arrives instead of polling for it.

Dramatiq's Redis consumer polls an empty queue with a growing back-off (5-10 ms, then 10-20 ms, ... up
to the worker timeout), so a message sent to an idle worker waits for the next poll, and a delayed
retry waits for the delay queue's next poll after its time has come. Here every enqueue also pushes a
token on the queue's wake list, and an idle consumer waits on that list with BLPOP for as long as it
would have slept, or until its next delayed message is due. The token is pushed by Dramatiq's own
dispatch script, whose enqueue command does it too, so enqueueing costs no extra round trip.

While a provider's circuit breaker is open, the consumers of its channels' queues take nothing
(``pause_ms``, asked of gate.queue_pause_ms): the messages they would take could only be held, so
they wait in Redis at no cost to the workers until the probe is due.

Acks and batches are grouped too. Dramatiq sends one round trip per processed message, and under load
that was the worker's largest cost: here the acks made while one is on its way go together in the
next (AckGroup). enqueue_many sends a batch with one script call per queue.

These speed-ups mirror dramatiq 2.2's private parts (its dispatch script and its consumer loop); the
version is pinned in requirements.txt and tests/test_broker.py runs both against Redis. They are
optional: with speedups=False, or with a Dramatiq whose private parts are not the ones known here,
the broker is Dramatiq's own RedisBroker (its script, its consumer, no wake lists), and in the second
case it logs why once, so that upgrading Dramatiq never stops the broker from starting.
"""

import logging
import threading
import time
import uuid
from collections.abc import Iterable

import dramatiq
import redis
import redis.sentinel
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.brokers import redis as dramatiq_redis
from dramatiq.common import compute_backoff, current_millis
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

logger = logging.getLogger(__name__)

#: A wake list left behind by stopped workers disappears after this long.
WAKE_TOKEN_TTL_S = 60


BROKER_OPTIONS = {"middleware", "namespace", "maintenance_chance", "heartbeat_timeout", "dead_message_ttl"}
#: redis-py's socket timeout when none is given.
REDIS_PY_SOCKET_TIMEOUT_S = 5

ENQUEUE_LUA = """
    local message_id = ARGS[1]
    local message_data = ARGS[2]

    redis.call("hset", queue_messages, message_id, message_data)
    redis.call("rpush", queue_full_name, message_id)
"""
ENQUEUE_MANY_AND_WAKE_LUA = f"""
    for i=1,#ARGS,2 do
        redis.call("hset", queue_messages, ARGS[i], ARGS[i + 1])
        redis.call("rpush", queue_full_name, ARGS[i])
    end
    redis.call("lpush", queue_full_name .. ".wake", 1)
    redis.call("ltrim", queue_full_name .. ".wake", 0, 0)
    redis.call("expire", queue_full_name .. ".wake", {WAKE_TOKEN_TTL_S})
"""
ACK_LUA = """
    local message_id = ARGS[1]

    if redis.call("srem", queue_acks, message_id) > 0 then
        redis.call("hdel", queue_messages, message_id)
    end
"""
ACK_MANY_LUA = """
    for i=1,#ARGS do
        local message_id = ARGS[i]
        if redis.call("srem", queue_acks, message_id) > 0 then
            redis.call("hdel", queue_messages, message_id)
        end
    end
"""


def speedups_can_run() -> bool:
    """Whether the installed Dramatiq takes the speed-ups; when it does not, log why."""
    reason = why_speedups_cannot_run()
    if reason is not None:
        logger.warning(
            "Redis broker speed-ups are off: %s (dramatiq %s). Workers poll their queues and send one ack "
            "per message, as with Dramatiq's own RedisBroker. Use the Dramatiq version pinned in "
            "requirements.txt to get them back, or turn them off (REDIS_BROKER_SPEEDUPS=false) to silence "
            "this warning.",
            reason,
            getattr(dramatiq, "__version__", "unknown version"),
        )
    return reason is None


def why_speedups_cannot_run() -> str | None:
    """Why the installed Dramatiq's private parts cannot take the speed-ups; None when they can."""
    scripts = getattr(dramatiq_redis, "_scripts", None)
    if not isinstance(scripts, dict) or "dispatch" not in scripts:
        return "dramatiq.brokers.redis._scripts has no dispatch script"
    if not isinstance(getattr(dramatiq_redis, "_RedisConsumer", None), type):
        return "dramatiq.brokers.redis._RedisConsumer is missing"
    if not callable(getattr(dramatiq_redis.RedisBroker, "_max_unpack_size", None)):
        return "dramatiq.brokers.redis.RedisBroker._max_unpack_size is missing"
    script = stock_dispatch_script()
    if script is None or script.count(ENQUEUE_LUA) != 1 or script.count(ACK_LUA) != 1:
        return "Dramatiq's Redis dispatch script is not the one this broker knows"
    return None


def stock_dispatch_script() -> str | None:
    script = dramatiq_redis._scripts["dispatch"]
    if isinstance(script, str):
        return script
    try:
        return script.decode()
    except (AttributeError, UnicodeDecodeError):
        return None


def waking_dispatch_script() -> str:
    """Dramatiq's dispatch script, with two changes.

    - enqueue takes any number of (message id, message) pairs, all for one queue, and pushes a token
      on the queue's wake list. One token is enough: a consumer that wakes fetches every message it
      has room for.
    - ack takes any number of message ids, as requeue does.

    With one message, both do what they did. Only for a script that why_speedups_cannot_run accepts.
    """
    script = stock_dispatch_script()
    return script.replace(ENQUEUE_LUA, ENQUEUE_MANY_AND_WAKE_LUA).replace(ACK_LUA, ACK_MANY_LUA)


class RedisBroker(dramatiq_redis.RedisBroker):
    """Takes RedisBroker's arguments. Connection options (socket_timeout, socket_connect_timeout, ...)
    apply with ``url`` too; Dramatiq's own broker drops them when given a URL.

    ``speedups=False`` makes it Dramatiq's own broker apart from that; so does a Dramatiq whose private
    parts are not the ones this module knows, with a warning. ``self.speedups`` tells which it is.

    ``sentinels`` (a list of (host, port)) puts it on the Redis master that those Sentinels name
    ``sentinel_master``, followed across failovers; ``url`` then gives only the database, password
    and TLS (see sentinel_client).
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        client=None,
        speedups: bool = True,
        sentinels: list[tuple[str, int]] | None = None,
        sentinel_master: str = "mymaster",
        sentinel_password: str | None = None,
        **options,
    ) -> None:
        broker_options = {name: options.pop(name) for name in BROKER_OPTIONS if name in options}
        if sentinels:
            client = sentinel_client(sentinels, sentinel_master, url, sentinel_password, **options)
        elif url is not None:
            client = redis.Redis.from_url(url, **options)
        elif client is None:
            client = redis.Redis(**options)
        super().__init__(client=client, **broker_options)
        self.speedups = speedups and speedups_can_run()
        if self.speedups:
            self.start_speedups()

    def start_speedups(self) -> None:
        self.scripts["dispatch"] = self.client.register_script(waking_dispatch_script())
        socket_timeout = self.client.connection_pool.connection_kwargs.get("socket_timeout")
        # A blocking wait must end before the socket times out.
        self.longest_wait_ms = (socket_timeout or REDIS_PY_SOCKET_TIMEOUT_S) * 1000 / 2
        self.ack_groups = {}
        self.ack_groups_lock = threading.Lock()
        self.pauses_failed = False

    @property
    def consumer_class(self):
        return WakingConsumer if self.speedups else super().consumer_class

    def wake_key(self, queue_name: str) -> str:
        return f"{self.namespace}:{queue_name}.wake"

    def enqueue_many(self, messages: Iterable[Message]) -> list[Message]:
        """enqueue() for many undelayed messages; with the speed-ups, all in one round trip."""
        if not self.speedups:
            return [self.enqueue(message) for message in messages]
        return self.enqueue_in_one_round_trip(messages)

    def enqueue_in_one_round_trip(self, messages: Iterable[Message]) -> list[Message]:
        """One dispatch call per queue, all in one pipeline."""
        enqueued, by_queue = [], {}
        for message in messages:
            message = message.copy(options={"redis_message_id": str(uuid.uuid4())})
            self.emit_before("enqueue", message, None)
            enqueued.append(message)
            by_queue.setdefault(message.queue_name, []).append(message)
        pipeline = self.client.pipeline(transaction=False)
        for queue_name, queued in by_queue.items():
            self.dispatch_enqueue(pipeline, queue_name, queued)
        pipeline.execute()
        for message in enqueued:
            self.emit_after("enqueue", message, None)
        return enqueued

    def dispatch_enqueue(self, pipeline, queue_name: str, messages: list[Message]) -> None:
        """Queue the dispatch script's enqueue with the arguments RedisBroker._dispatch gives it."""
        arguments = [
            "enqueue",
            current_millis(),
            queue_name,
            self.broker_id,
            self.heartbeat_timeout,
            self.dead_message_ttl,
            0,  # no maintenance from inside a pipeline
            self._max_unpack_size(),
        ]
        for message in messages:
            arguments += [message.options["redis_message_id"], message.encode()]
        self.scripts["dispatch"](keys=[self.namespace], args=arguments, client=pipeline)

    def pause_ms(self, queue_name: str) -> int:
        """How long the consumer of a queue should take nothing: while the circuit breaker of its
        channel's provider is open. A failure other than Redis's turns the pauses off, with a warning."""
        if self.pauses_failed:
            return 0
        try:
            from .gate import queue_pause_ms

            return queue_pause_ms(queue_name)
        except redis.ConnectionError:
            raise
        except Exception:
            self.pauses_failed = True
            logger.warning("Consumers will not pause while a circuit breaker is open.", exc_info=True)
            return 0

    def wait_for_messages(self, queue_name: str, timeout_ms: float) -> None:
        self.client.blpop([self.wake_key(queue_name)], timeout=timeout_ms / 1000)

    def ack_group(self, queue_name: str) -> "AckGroup":
        with self.ack_groups_lock:
            return self.ack_groups.setdefault(queue_name, AckGroup(self, queue_name))


def sentinel_client(
    sentinels: list[tuple[str, int]],
    master: str,
    url: str | None = None,
    sentinel_password: str | None = None,
    **options,
) -> redis.Redis:
    """A client of the Redis master that ``sentinels`` know as ``master``.

    Each new connection asks a Sentinel for the master's address, so after a failover the client
    reconnects to the new master. ``url`` (redis://:password@ignored-host/3, rediss:// for TLS) gives
    the master's database, credentials and TLS; its host and port are not used. The Sentinels get the
    connection timeouts of ``options``, and ``sentinel_password`` when they require one.
    """
    master_options = {}
    if url:
        master_options = redis.connection.parse_url(url)
        master_options.pop("host", None)
        master_options.pop("port", None)
        if master_options.pop("connection_class", None) is redis.SSLConnection:
            master_options["ssl"] = True
    master_options |= options
    sentinel_options = {
        name: options[name] for name in ("socket_connect_timeout", "socket_timeout") if name in options
    }
    if sentinel_password:
        sentinel_options["password"] = sentinel_password
    return redis.sentinel.Sentinel(sentinels, sentinel_kwargs=sentinel_options).master_for(
        master, **master_options
    )


def describe_client(client: redis.Redis) -> str:
    """Where a Redis client connects, without its password: redis://host:port/db, or the Sentinels."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    database = kwargs.get("db", 0)
    if isinstance(pool, redis.sentinel.SentinelConnectionPool):
        sentinels = ",".join(
            f"{sentinel.connection_pool.connection_kwargs.get('host')}:"
            f"{sentinel.connection_pool.connection_kwargs.get('port')}"
            for sentinel in pool.sentinel_manager.sentinels
        )
        return f"sentinel master {pool.service_name!r} via {sentinels}, database {database}"
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={database}"
    scheme = "rediss" if issubclass(pool.connection_class, redis.SSLConnection) else "redis"
    return f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{database}"


class AckGroup:
    """A queue's acks: those made while another is on its way go together in the next round trip.

    The thread that finds no ack on its way sends its own, then whatever the others left, until none
    is left; the others return at once. So under load one round trip acks several messages, and when
    idle an ack is sent as soon as it is made. Under steady load the sending thread may go on sending
    the others' acks for a while before it takes its next message. Workers stop before their
    consumers, so by then every ack has been sent; after a failed round trip, the acks wait for the
    next ack of the queue or for the consumer to close. The group belongs to the broker, not to one
    consumer: acks left by a consumer that Dramatiq replaced after a connection error go with the
    next consumer's.
    """

    def __init__(self, broker, queue_name):
        self.broker = broker
        self.queue_name = queue_name
        self.pending = []
        self.lock = threading.Lock()
        self.sending = False

    def ack(self, redis_message_id):
        with self.lock:
            self.pending.append(redis_message_id)
        self.send_unless_on_its_way()

    def send_unless_on_its_way(self):
        with self.lock:
            if self.sending or not self.pending:
                return
            self.sending = True
        self.send_pending()

    def send_pending(self):
        while True:
            with self.lock:
                message_ids, self.pending = self.pending, []
                if not message_ids:
                    self.sending = False
                    return
            try:
                self.broker.do_ack(self.queue_name, *message_ids)
            except BaseException as error:
                # Whatever went wrong (a lost connection, a timeout), the acks wait for the next one.
                with self.lock:
                    self.pending[:0] = message_ids
                    self.sending = False
                if isinstance(error, redis.ConnectionError):
                    raise ConnectionClosed(error) from None  # Dramatiq retries it after a pause
                raise


# Without Dramatiq's private consumer the speed-ups are off and this class is never used, but the
# module must still import.
class WakingConsumer(getattr(dramatiq_redis, "_RedisConsumer", Consumer)):
    """Dramatiq's Redis consumer, waiting on the wake list rather than sleeping when the queue is empty."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.etas = {}
        self.etas_lock = threading.Lock()
        self.acked = threading.Event()
        self.acks = self.broker.ack_group(self.queue_name)

    def __next__(self):
        try:
            if self.message_cache:
                return self.next_from_cache()
            self.acked.clear()
            room = self.prefetch - self.outstanding_message_count
            if room <= 0:
                self.wait_for_room()
                return None
            pause_ms = self.broker.pause_ms(self.queue_name)
            if pause_ms > 0:
                time.sleep(min(pause_ms, self.timeout, self.ms_until_next_eta()) / 1000)
                return None
            self.message_cache = self.broker.do_fetch(self.queue_name, room)
            if self.message_cache:
                return self.next_from_cache()
            self.wait()
            return None
        except redis.ConnectionError as error:
            raise ConnectionClosed(error) from None

    def next_from_cache(self):
        self.misses = 0
        message = Message.decode(self.message_cache.pop(0))
        self.queued_message_ids.add(message.message_id)
        eta = message.options.get("eta")
        if isinstance(eta, (int, float)):
            with self.etas_lock:
                self.etas[message.message_id] = eta
        return MessageProxy(message)

    def wait(self):
        """Until a message arrives, for at most the back-off, and never past a delayed message's eta."""
        self.misses, backoff_ms = compute_backoff(self.misses, factor=1, max_backoff=self.timeout)
        timeout_ms = min(backoff_ms, self.ms_until_next_eta(), self.broker.longest_wait_ms)
        if timeout_ms >= 1:
            self.broker.wait_for_messages(self.queue_name, timeout_ms)
        elif timeout_ms > 0:
            time.sleep(timeout_ms / 1000)

    def wait_for_room(self):
        """Every prefetched message is still being worked on: wait for an ack rather than poll Redis."""
        timeout_ms = min(self.timeout, self.ms_until_next_eta())
        if timeout_ms > 0:
            self.acked.wait(timeout_ms / 1000)

    def ms_until_next_eta(self):
        with self.etas_lock:
            next_eta = min(self.etas.values(), default=None)
        if next_eta is None:
            return float("inf")
        return max(0, next_eta - current_millis())

    def ack(self, message):
        """The message stops counting against prefetch once its ack is queued, sent or not."""
        self.forget_eta(message)
        self.queued_message_ids.discard(message.message_id)
        self.acked.set()
        self.acks.ack(message.options["redis_message_id"])

    def nack(self, message):
        self.forget_eta(message)
        try:
            super().nack(message)
        finally:
            self.acked.set()

    def close(self):
        """Workers stop before their consumers close: send the acks a failed round trip left behind."""
        try:
            self.acks.send_unless_on_its_way()
        except Exception:
            self.logger.warning(
                "Could not send %d acks on queue %r; their messages will run again after a restart.",
                len(self.acks.pending),
                self.queue_name,
                exc_info=True,
            )
        super().close()

    def requeue(self, messages):
        messages = list(messages)
        for message in messages:
            self.forget_eta(message)
        super().requeue(messages)

    def forget_eta(self, message):
        with self.etas_lock:
            self.etas.pop(message.message_id, None)


def redeliver_orphaned_messages(broker: dramatiq.Broker) -> int:
    """Give the unfinished messages of workers that died back to their queues now.

    Dramatiq's Redis broker does it in its maintenance, which each Redis command runs by chance
    (maintenance_chance in a million): with few commands, a dead worker's messages could wait many
    minutes. Here every declared queue gets one command from a broker whose chance is certainty.
    A worker is dead once it has been silent for heartbeat_timeout. Returns how many queues were
    swept; 0 off Redis or when this Dramatiq does not run commands this way (then its own chance
    maintenance is all there is).
    """
    if not isinstance(broker, dramatiq_redis.RedisBroker):
        return 0
    sweeper = dramatiq_redis.RedisBroker(
        client=broker.client,
        namespace=broker.namespace,
        heartbeat_timeout=broker.heartbeat_timeout,
        dead_message_ttl=broker.dead_message_ttl,
        maintenance_chance=dramatiq_redis.MAINTENANCE_SCALE,
        middleware=[],
    )
    queues = broker.get_declared_queues() | broker.get_declared_delay_queues()
    try:
        for queue_name in sorted(queues):
            sweeper.do_qsize(queue_name)  # any command but ack and nack runs maintenance first
    except AttributeError:
        logger.warning("This Dramatiq's Redis broker has no do_qsize; leaving redelivery to its maintenance.")
        return 0
    return len(queues)


def persistence_warnings(client: redis.Redis) -> list[str]:
    """What in Redis's configuration could lose queued messages: no AOF nor RDB, or eviction."""
    try:
        config = client.config_get("appendonly") | client.config_get("save")
        config |= client.config_get("maxmemory-policy")
    except redis.ResponseError:
        return []  # CONFIG is disabled (a managed Redis): its provider's settings apply
    return redis_config_warnings(config)


def redis_config_warnings(config: dict[str, str]) -> list[str]:
    warnings = []
    if config.get("appendonly") != "yes" and not config.get("save"):
        warnings.append(
            "Redis keeps no data on disk (appendonly no, no save points): a restart loses every queued "
            "message. Set appendonly yes; the dispatcher re-sends what was lost, late."
        )
    policy = config.get("maxmemory-policy", "noeviction")
    if policy != "noeviction":
        warnings.append(
            f"Redis evicts keys when full (maxmemory-policy {policy}): queued messages can vanish. "
            "Set maxmemory-policy noeviction."
        )
    return warnings

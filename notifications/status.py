"""What is waiting where: messages in Redis per queue, workers alive, the scheduler's last tick, and
failed jobs by cause. ``manage.py notifications_status``, the admin's status page and /metrics read it.

Everything here is read from Redis with a few commands per queue (lengths, the head of each queue),
never by scanning messages, and from the failed jobs' index: cheap enough for every scrape.
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dramatiq
import redis
from dramatiq import Message
from dramatiq.common import dq_name, q_name, xq_name

from failedjobs.conf import setting as failedjobs_setting
from failedjobs.groups import ErrorGroup, error_groups
from failedjobs.models import FailedJob

from . import gate
from .breaker import Status as BreakerStatus
from .health import mask_secrets
from .heartbeat import BEAT_INTERVAL_S, WORKERS_KEY

logger = logging.getLogger(__name__)

#: Where the periodic dispatch_due records when it last ran (a Unix time), on the broker's Redis.
SCHEDULER_TICK_KEY = "notifications:scheduler:last-tick"
#: The tick outlives a stopped scheduler by this long (then: never seen).
SCHEDULER_TICK_TTL_S = 7 * 24 * 3600


@dataclass
class QueueStatus:
    name: str
    waiting: int
    #: Waiting for a retry (or an ``eta``) in the queue's delay queue.
    delayed: int
    #: In Redis's dead-letter queue: not yet copied into FailedJob.
    dead: int
    #: Seconds since the oldest waiting message was enqueued; None when none waits.
    oldest_age_s: float | None = None


@dataclass
class PipelineStatus:
    queues: list[QueueStatus] = field(default_factory=list)
    #: Workers with a heartbeat within the broker's heartbeat timeout; None without Redis.
    workers: int | None = None
    scheduler_last_tick: datetime | None = None
    groups: list[ErrorGroup] = field(default_factory=list)
    #: Each provider's circuit breaker, with the deliveries it holds.
    breakers: list[BreakerStatus] = field(default_factory=list)
    #: Why Redis could not be read (it is down, or the queue is off), else "".
    redis_error: str = ""

    @property
    def failed_jobs(self) -> int:
        return sum(group.count for group in self.groups)


def redis_client(broker: dramatiq.Broker) -> redis.Redis | None:
    client = getattr(broker, "client", None)
    return client if isinstance(client, redis.Redis) else None


def queue_names(broker: dramatiq.Broker) -> list[str]:
    """The broker's queues, without their delay queues (named QUEUE.DQ)."""
    return sorted({q_name(name) for name in broker.get_declared_queues()})


def queue_statuses(broker: dramatiq.Broker, *, now: float | None = None) -> list[QueueStatus]:
    """Each queue's counts: two pipelined round trips for all the queues together."""
    client = redis_client(broker)
    if client is None:
        return []
    namespace = getattr(broker, "namespace", "dramatiq")
    names = queue_names(broker)
    pipe = client.pipeline(transaction=False)
    for name in names:
        key = f"{namespace}:{name}"
        pipe.llen(key)
        pipe.llen(f"{namespace}:{dq_name(name)}")
        pipe.zcard(f"{namespace}:{xq_name(name)}")
        pipe.lindex(key, 0)
    replies = pipe.execute()
    statuses, heads = [], []
    for index, name in enumerate(names):
        waiting, delayed, dead, head = replies[4 * index : 4 * index + 4]
        statuses.append(QueueStatus(name, waiting, delayed, dead))
        heads.append(head)
    add_oldest_ages(client, namespace, statuses, heads, now or time.time())
    return statuses


def add_oldest_ages(
    client: redis.Redis, namespace: str, statuses: list[QueueStatus], heads: list, now: float
) -> None:
    """The age of each queue's first message: Dramatiq appends, so the head is the oldest."""
    pipe = client.pipeline(transaction=False)
    asked = []
    for status, head in zip(statuses, heads, strict=True):
        if head is not None:
            pipe.hget(f"{namespace}:{status.name}.msgs", head)
            asked.append(status)
    for status, data in zip(asked, pipe.execute(), strict=True):
        if data is None:
            continue  # taken by a worker meanwhile
        try:
            enqueued_ms = Message.decode(data).message_timestamp
        except Exception:
            logger.warning("The first message of queue %s cannot be decoded.", status.name)
            continue
        status.oldest_age_s = max(0.0, round(now - enqueued_ms / 1000, 1))


def workers_alive(broker: dramatiq.Broker, *, now: float | None = None) -> int | None:
    """Workers whose heartbeat (notifications.heartbeat) is newer than the broker's heartbeat timeout.

    Dramatiq's own heartbeats would count every process that enqueued lately as well.
    """
    client = redis_client(broker)
    if client is None:
        return None
    now = now or time.time()
    timeout_s = max(getattr(broker, "heartbeat_timeout", 60_000) / 1000, 3 * BEAT_INTERVAL_S)
    pipe = client.pipeline(transaction=False)
    pipe.zremrangebyscore(WORKERS_KEY, 0, now - 10 * timeout_s)  # long gone: forget them
    pipe.zcount(WORKERS_KEY, now - timeout_s, "+inf")
    return int(pipe.execute()[1])


def record_scheduler_tick(broker: dramatiq.Broker | None = None) -> None:
    """Say that the scheduler's every-minute job ran now (on Redis; nothing when there is none)."""
    client = redis_client(broker or dramatiq.get_broker())
    if client is None:
        return
    try:
        client.set(SCHEDULER_TICK_KEY, f"{time.time():.3f}", ex=SCHEDULER_TICK_TTL_S)
    except redis.RedisError:
        logger.warning("Could not record the scheduler's tick in Redis.", exc_info=True)


def scheduler_last_tick(broker: dramatiq.Broker) -> datetime | None:
    client = redis_client(broker)
    value = client.get(SCHEDULER_TICK_KEY) if client is not None else None
    return datetime.fromtimestamp(float(value), tz=UTC) if value else None


def pipeline_status(broker: dramatiq.Broker | None = None) -> PipelineStatus:
    """Queues, workers and scheduler from Redis (when it answers), failed jobs by cause from the database."""
    broker = broker or dramatiq.get_broker()
    status = PipelineStatus(groups=error_groups(FailedJob.objects.filter(status=FailedJob.Status.FAILED)))
    if not failedjobs_setting("QUEUE_ENABLED"):
        status.redis_error = "QUEUE_ENABLED is off: messages run in the process that sends them"
        return status
    if redis_client(broker) is None:
        status.redis_error = f"the broker is a {type(broker).__name__}, not on Redis"
        return status
    try:
        status.queues = queue_statuses(broker)
        status.workers = workers_alive(broker)
        status.scheduler_last_tick = scheduler_last_tick(broker)
        status.breakers = gate.breaker_statuses()
    except redis.RedisError as error:
        status.redis_error = mask_secrets(f"Redis does not answer: {type(error).__name__}: {error}")
    return status

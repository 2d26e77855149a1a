"""Dramatiq's Redis broker, with workers that wake up when a message arrives instead of polling for it.

Dramatiq's Redis consumer polls an empty queue with a growing back-off (5-10 ms, then 10-20 ms, ... up
to the worker timeout), so a message sent to an idle worker waits for the next poll, and a delayed
retry waits for the delay queue's next poll after its time has come. Here every enqueue also pushes a
token on the queue's wake list (in the same round trip), and an idle consumer waits on that list with
BLPOP for as long as it would have slept, or until its next delayed message is due.

This mirrors dramatiq 2.2's RedisBroker (the arguments of its dispatch script and its consumer loop);
the version is pinned in requirements.txt and tests/test_broker.py runs both against Redis.
"""

import threading
import time
import uuid

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers import redis as dramatiq_redis
from dramatiq.common import compute_backoff, current_millis
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

#: A wake list left behind by stopped workers disappears after this long.
WAKE_TOKEN_TTL_S = 60


class RedisBroker(dramatiq_redis.RedisBroker):
    @property
    def consumer_class(self):
        return WakingConsumer

    def wake_key(self, queue_name):
        return f"{self.namespace}:{queue_name}.wake"

    def do_enqueue(self, queue_name, redis_message_id, data):
        pipeline = self.client.pipeline(transaction=False)
        self.dispatch_enqueue(pipeline, queue_name, redis_message_id, data, maintenance=True)
        self.push_wake_token(pipeline, queue_name)
        pipeline.execute()

    def enqueue_many(self, messages):
        """enqueue() for many undelayed messages, in one round trip."""
        pipeline = self.client.pipeline(transaction=False)
        enqueued = []
        for message in messages:
            message = message.copy(options={"redis_message_id": str(uuid.uuid4())})
            self.emit_before("enqueue", message, None)
            data = message.encode()
            self.dispatch_enqueue(pipeline, message.queue_name, message.options["redis_message_id"], data)
            enqueued.append(message)
        for queue_name in {message.queue_name for message in enqueued}:
            self.push_wake_token(pipeline, queue_name)
        pipeline.execute()
        for message in enqueued:
            self.emit_after("enqueue", message, None)
        return enqueued

    def dispatch_enqueue(self, pipeline, queue_name, redis_message_id, data, *, maintenance=False):
        """Queue dramatiq's dispatch script, with the arguments RedisBroker._dispatch gives it."""
        arguments = [
            "enqueue",
            current_millis(),
            queue_name,
            self.broker_id,
            self.heartbeat_timeout,
            self.dead_message_ttl,
            self._should_do_maintenance("enqueue") if maintenance else 0,
            self._max_unpack_size(),
            redis_message_id,
            data,
        ]
        self.scripts["dispatch"](keys=[self.namespace], args=arguments, client=pipeline)

    def push_wake_token(self, pipeline, queue_name):
        """One token is enough: a consumer that wakes fetches every message it has room for."""
        key = self.wake_key(queue_name)
        pipeline.lpush(key, 1)
        pipeline.ltrim(key, 0, 0)
        pipeline.expire(key, WAKE_TOKEN_TTL_S)

    def wait_for_messages(self, queue_name, timeout_ms):
        self.client.blpop([self.wake_key(queue_name)], timeout=timeout_ms / 1000)


class WakingConsumer(dramatiq_redis._RedisConsumer):
    """Dramatiq's Redis consumer, waiting on the wake list rather than sleeping when the queue is empty."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.etas = {}
        self.etas_lock = threading.Lock()

    def __next__(self):
        try:
            if self.message_cache:
                return self.next_from_cache()
            if self.outstanding_message_count < self.prefetch:
                wanted = self.prefetch - self.outstanding_message_count
                self.message_cache = self.broker.do_fetch(self.queue_name, wanted)
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
        timeout_ms = min(backoff_ms, self.ms_until_next_eta())
        if timeout_ms >= 1:
            self.broker.wait_for_messages(self.queue_name, timeout_ms)
        elif timeout_ms > 0:
            time.sleep(timeout_ms / 1000)

    def ms_until_next_eta(self):
        with self.etas_lock:
            next_eta = min(self.etas.values(), default=None)
        if next_eta is None:
            return float("inf")
        return max(0, next_eta - current_millis())

    def ack(self, message):
        self.forget_eta(message)
        super().ack(message)

    def nack(self, message):
        self.forget_eta(message)
        super().nack(message)

    def requeue(self, messages):
        messages = list(messages)
        for message in messages:
            self.forget_eta(message)
        super().requeue(messages)

    def forget_eta(self, message):
        with self.etas_lock:
            self.etas.pop(message.message_id, None)

"""The waking Redis broker: idle consumers wait on a wake list and are woken by enqueues, and a delayed
message is handed to the worker when it is due, not at the delay queue's next poll.
"""

import socket
import threading

import dramatiq
import pytest
import redis
from django.conf import settings
from dramatiq.common import current_millis, dq_name

from notifications.broker import WAKE_TOKEN_TTL_S, RedisBroker
from tests.helpers import wait_until

QUEUE = "wake_test"
#: Far longer than any assertion waits: a consumer that returns sooner was woken.
LONG_IDLE_MS = 60_000


@pytest.fixture
def broker(redis_url):
    # A socket timeout longer than LONG_IDLE_MS, so that waits are as long as the back-off says.
    broker = RedisBroker(url=redis_url, middleware=[], socket_timeout=300)
    broker.client.flushdb()
    broker.declare_queue(QUEUE)
    yield broker
    broker.client.flushdb()
    broker.close()


def new_message(queue_name=QUEUE, **options):
    return dramatiq.Message(queue_name=queue_name, actor_name="noop", args=(), kwargs={}, options=options)


def idle_consumer(broker, queue_name=QUEUE):
    """A consumer that has found its queue empty often enough to wait its longest."""
    consumer = broker.consume(queue_name, prefetch=4, timeout=LONG_IDLE_MS)
    consumer.misses = 30
    broker.client.delete(broker.wake_key(dq_name(QUEUE)))  # the enqueue's token, not needed any more
    return consumer


def next_in_thread(consumer):
    returned = []
    thread = threading.Thread(target=lambda: returned.append(next(consumer)), daemon=True)
    thread.start()
    return thread, returned


def test_an_idle_consumer_wakes_up_when_a_message_is_enqueued(broker):
    consumer = idle_consumer(broker)
    thread, returned = next_in_thread(consumer)
    wait_until(lambda: blocked_clients(broker) == 1, message="the consumer to wait")

    broker.enqueue(new_message())

    thread.join(timeout=10)
    assert not thread.is_alive(), "the consumer slept through the enqueue"
    assert returned == [None]
    message = next(consumer)
    assert message is not None and message.queue_name == QUEUE


def test_a_consumer_holding_a_delayed_message_waits_only_until_it_is_due(broker):
    broker.enqueue(new_message(), delay=300)
    consumer = idle_consumer(broker, dq_name(QUEUE))
    delayed = next(consumer)
    assert 0 < consumer.ms_until_next_eta() <= 300
    consumer.misses = 30
    broker.client.delete(broker.wake_key(dq_name(QUEUE)))  # the enqueue's token, not needed any more

    thread, returned = next_in_thread(consumer)
    thread.join(timeout=10)

    assert returned == [None]
    assert not thread.is_alive(), "the consumer waited past the delayed message's eta"
    assert current_millis() >= delayed.options["eta"]
    consumer.ack(delayed)
    assert consumer.ms_until_next_eta() == float("inf")


def test_a_consumer_with_no_room_left_resumes_as_soon_as_a_message_is_acked(broker):
    broker.enqueue(new_message())
    broker.enqueue(new_message())
    consumer = broker.consume(QUEUE, prefetch=1, timeout=LONG_IDLE_MS)
    first = next(consumer)
    consumer.misses = 30
    broker.client.delete(broker.wake_key(QUEUE))  # the enqueues' token: no enqueue wakes it now
    thread, returned = next_in_thread(consumer)

    consumer.ack(first)
    thread.join(timeout=10)

    assert not thread.is_alive(), "the consumer did not notice the ack"
    # None when the ack came while it waited; the second message when it came before.
    second = returned[0] or next(consumer)
    assert second is not None and second.message_id != first.message_id


def unacked(broker, queue_name=QUEUE):
    """Messages fetched or queued but not acked yet: Dramatiq keeps them in the queue's hash."""
    return broker.client.hlen(f"{broker.namespace}:{queue_name}.msgs")


def test_acks_made_while_another_is_on_its_way_go_with_the_next_round_trip(broker):
    broker.enqueue_many([new_message() for _ in range(3)])
    consumer = broker.consume(QUEUE, prefetch=3, timeout=100)
    first, second, third = (next(consumer) for _ in range(3))
    acks = broker.ack_group(QUEUE)
    acks.sending = True  # as if another worker thread were sending its ack now

    consumer.ack(first)
    consumer.ack(second)

    assert unacked(broker) == 3, "an ack went out while another was on its way"
    assert consumer.outstanding_message_count == 1, "acked messages still count against prefetch"
    acks.send_pending()  # what the other thread does once its round trip returns
    assert unacked(broker) == 1
    consumer.ack(third)
    assert unacked(broker) == 0
    assert broker.client.scard(f"{broker.namespace}:__acks__.{broker.broker_id}.{QUEUE}") == 0


@pytest.fixture
def silent_redis():
    """A port that accepts connections and never answers: every command times out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield redis.Redis(port=listener.getsockname()[1], socket_timeout=0.1, retry=None)


@pytest.mark.parametrize("failure", ["connection refused", "timeout"])
def test_acks_that_could_not_be_sent_go_with_the_next_one(broker, silent_redis, failure):
    """Dramatiq retries an ack that lost its connection after a pause, and gives up on any other error."""
    from dramatiq.errors import ConnectionClosed

    broker.enqueue_many([new_message() for _ in range(2)])
    consumer = broker.consume(QUEUE, prefetch=2, timeout=100)
    first, second = next(consumer), next(consumer)
    working_client = broker.scripts["dispatch"].registered_client
    if failure == "timeout":
        failing_client, raised = silent_redis, redis.TimeoutError
    else:
        failing_client, raised = RedisBroker(url="redis://127.0.0.1:1/0").client, ConnectionClosed
    broker.scripts["dispatch"].registered_client = failing_client

    with pytest.raises(raised):
        consumer.ack(first)

    broker.scripts["dispatch"].registered_client = working_client
    consumer.ack(second)
    assert unacked(broker) == 0


def test_a_closing_consumer_sends_the_acks_a_failed_round_trip_left_behind(broker, silent_redis):
    broker.enqueue(new_message())
    consumer = broker.consume(QUEUE, prefetch=1, timeout=100)
    message = next(consumer)
    working_client = broker.scripts["dispatch"].registered_client
    broker.scripts["dispatch"].registered_client = silent_redis
    with pytest.raises(redis.TimeoutError):  # Dramatiq logs it and does not retry
        consumer.ack(message)
    broker.scripts["dispatch"].registered_client = working_client
    assert unacked(broker) == 1

    consumer.close()  # what Worker.stop does once its worker threads have stopped

    assert unacked(broker) == 0


def test_acks_left_by_a_consumer_that_lost_redis_go_with_its_replacement(broker):
    """Dramatiq replaces a consumer after a connection error, and retries the failed ack on the new one."""
    from dramatiq.errors import ConnectionClosed

    broker.enqueue_many([new_message() for _ in range(2)])
    consumer = broker.consume(QUEUE, prefetch=2, timeout=100)
    first, second = next(consumer), next(consumer)
    acks = broker.ack_group(QUEUE)
    acks.sending = True
    consumer.ack(second)  # made while the first one was on its way
    acks.sending = False
    working_client = broker.scripts["dispatch"].registered_client
    broker.scripts["dispatch"].registered_client = RedisBroker(url="redis://127.0.0.1:1/0").client
    with pytest.raises(ConnectionClosed):
        consumer.ack(first)
    broker.scripts["dispatch"].registered_client = working_client

    replacement = broker.consume(QUEUE, prefetch=2, timeout=100)
    replacement.ack(first)

    assert unacked(broker) == 0


@pytest.mark.worker
def test_a_busy_worker_leaves_no_message_unacked(broker):
    """Eight threads acking at once: every ack reaches Redis, grouped or not."""
    done = []

    @dramatiq.actor(broker=broker, queue_name=QUEUE)
    def noop(number):
        done.append(number)

    broker.enqueue_many([noop.message(number) for number in range(2000)])
    broker.client.config_resetstat()
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=8)
    worker.start()
    try:
        wait_until(lambda: len(done) == 2000, timeout=30, message="the messages to run")
        wait_until(lambda: unacked(broker) == 0, timeout=10, message="every ack to reach Redis")
    finally:
        worker.stop()
    # Dramatiq's own consumer makes one dispatch call per ack, plus its fetches.
    dispatch_calls = broker.client.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert dispatch_calls < 2000, "acks were not grouped"
    assert broker.client.scard(f"{broker.namespace}:__acks__.{broker.broker_id}.{QUEUE}") == 0


def test_each_enqueue_leaves_a_single_expiring_wake_token(broker):
    for _ in range(3):
        broker.enqueue(new_message())
    broker.enqueue_many([new_message() for _ in range(5)])

    key = broker.wake_key(QUEUE)
    assert broker.client.llen(key) == 1
    assert 0 < broker.client.ttl(key) <= WAKE_TOKEN_TTL_S
    assert broker.client.llen(f"{broker.namespace}:{QUEUE}") == 8


def test_a_batch_for_two_queues_takes_one_dispatch_call_a_queue(broker):
    other = "wake_test_other"
    broker.declare_queue(other)
    messages = [new_message(), new_message(other), new_message(), new_message(other), new_message()]
    broker.client.config_resetstat()

    sent = broker.enqueue_many(messages)

    assert broker.client.info("commandstats")["cmdstat_evalsha"]["calls"] == 2
    assert [message.message_id for message in sent] == [message.message_id for message in messages]
    for queue_name in (QUEUE, other):
        in_order = [m.options["redis_message_id"].encode() for m in sent if m.queue_name == queue_name]
        assert broker.client.lrange(f"{broker.namespace}:{queue_name}", 0, -1) == in_order
        assert broker.client.llen(broker.wake_key(queue_name)) == 1


def test_messages_enqueued_together_are_all_consumed(broker):
    sent = broker.enqueue_many([new_message() for _ in range(5)])
    consumer = broker.consume(QUEUE, prefetch=10, timeout=100)

    received = [next(consumer) for _ in range(5)]

    assert {message.message_id for message in received} == {message.message_id for message in sent}


@pytest.mark.worker
def test_a_worker_runs_a_retry_after_its_backoff(broker):
    broker.add_middleware(dramatiq.middleware.Retries())
    attempts = []

    @dramatiq.actor(broker=broker, queue_name=QUEUE, max_retries=1, min_backoff=20, max_backoff=20)
    def fails_once():
        attempts.append(current_millis())
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")

    # Stopping waits for the consumers' current wait, up to the worker timeout, as with Dramatiq's own.
    worker = dramatiq.Worker(broker, worker_timeout=2000, worker_threads=1)
    worker.start()
    try:
        fails_once.send()
        wait_until(lambda: len(attempts) == 2, timeout=10, message="the retry")
    finally:
        worker.stop()
    assert attempts[1] - attempts[0] >= 20


def blocked_clients(broker):
    return int(broker.client.info("clients")["blocked_clients"])


def test_enqueues_pushed_by_dramatiq_itself_wake_the_consumer_too(broker):
    """Retries re-enqueue through the broker's dispatch script, not through this module's Python."""
    broker.do_enqueue(QUEUE, "redis-id", new_message().encode())

    assert broker.client.llen(broker.wake_key(QUEUE)) == 1


def test_a_dispatch_script_it_does_not_recognise_stops_the_broker_from_starting(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured
    from dramatiq.brokers import redis as dramatiq_redis

    monkeypatch.setitem(dramatiq_redis._scripts, "dispatch", b"-- some other version\n")

    with pytest.raises(ImproperlyConfigured, match="dispatch script"):
        RedisBroker(url=settings.REDIS_URL, middleware=[])


def test_connection_options_apply_to_a_broker_built_from_a_url():
    broker = RedisBroker(url="redis://127.0.0.1:6379/0", socket_connect_timeout=0.5, socket_timeout=3)

    options = broker.client.connection_pool.connection_kwargs
    assert (options["socket_connect_timeout"], options["socket_timeout"]) == (0.5, 3)
    assert broker.longest_wait_ms == 1500


def test_an_idle_consumer_waits_no_longer_than_half_the_socket_timeout(broker, redis_url):
    fast_broker = RedisBroker(url=redis_url, socket_timeout=0.2)
    consumer = idle_consumer(fast_broker)

    assert next(consumer) is None  # a socket timeout would raise


def test_a_consumer_that_loses_redis_raises_what_dramatiq_restarts_it_on():
    from dramatiq.errors import ConnectionClosed

    unreachable = RedisBroker(url="redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    consumer = unreachable.consume(QUEUE, prefetch=1, timeout=100)

    with pytest.raises(ConnectionClosed):
        next(consumer)

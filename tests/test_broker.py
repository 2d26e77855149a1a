"""The waking Redis broker: idle consumers wait on a wake list and are woken by enqueues, and a delayed
message is handed to the worker when it is due, not at the delay queue's next poll. Without its
speed-ups (REDIS_BROKER_SPEEDUPS=false, CI's second pass, or a Dramatiq it does not recognise) it is
Dramatiq's own broker, and the tests of the speed-ups are skipped.
"""

import logging
import socket
import subprocess
import sys
import threading
import time

import dramatiq
import pytest
import redis
from django.conf import settings
from dramatiq.brokers import redis as dramatiq_redis
from dramatiq.common import current_millis, dq_name

from notifications.broker import ENQUEUE_LUA, WAKE_TOKEN_TTL_S, RedisBroker, why_speedups_cannot_run
from tests.helpers import ROOT, wait_until

QUEUE = "wake_test"
#: Far longer than any assertion waits: a consumer that returns sooner was woken.
LONG_IDLE_MS = 60_000

#: What the project's broker is configured with, and whether it runs with the speed-ups.
CONFIGURED_SPEEDUPS = settings.DRAMATIQ_BROKER["OPTIONS"].get("speedups", False)
SPEEDUPS_ON = CONFIGURED_SPEEDUPS and why_speedups_cannot_run() is None
WHY_NO_SPEEDUPS = why_speedups_cannot_run() or "REDIS_BROKER_SPEEDUPS=false"
speedups_only = pytest.mark.skipif(
    not SPEEDUPS_ON, reason=f"the broker runs without speed-ups: {WHY_NO_SPEEDUPS}"
)


# Every test here talks to Redis, and some start worker threads.
pytestmark = [pytest.mark.redis, pytest.mark.worker]


@pytest.fixture
def make_broker(redis_url):
    """Brokers on the test Redis, built as the project's is unless told otherwise, on an empty database."""
    built = []

    def make(**options):
        options = {
            "url": redis_url,
            "speedups": CONFIGURED_SPEEDUPS,
            **options,
        }
        broker = RedisBroker(middleware=[], **options)
        broker.client.flushdb()
        built.append(broker)
        return broker

    yield make
    for broker in built:
        broker.client.flushdb()
        broker.close()


@pytest.fixture
def broker(make_broker):
    # A socket timeout longer than LONG_IDLE_MS, so that waits are as long as the back-off says.
    broker = make_broker(socket_timeout=300)
    broker.declare_queue(QUEUE)
    return broker


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


@speedups_only
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


@speedups_only
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


@speedups_only
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


@speedups_only
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


@speedups_only
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


@speedups_only
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


@speedups_only
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


@speedups_only
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


@speedups_only
def test_each_enqueue_leaves_a_single_expiring_wake_token(broker):
    for _ in range(3):
        broker.enqueue(new_message())
    broker.enqueue_many([new_message() for _ in range(5)])

    key = broker.wake_key(QUEUE)
    assert broker.client.llen(key) == 1
    assert 0 < broker.client.ttl(key) <= WAKE_TOKEN_TTL_S
    assert broker.client.llen(f"{broker.namespace}:{QUEUE}") == 8


@speedups_only
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
    # Dramatiq's jitter brings a backoff past max_backoff down to 50-100% of it: 10 to 20 ms here.
    assert attempts[1] - attempts[0] >= 10


def blocked_clients(broker):
    """Clients of the test database blocked on BLPOP: others may be sharing this Redis server."""
    db = str(broker.client.connection_pool.connection_kwargs.get("db", 0))
    clients = broker.client.client_list()
    return sum(1 for c in clients if c["db"] == db and c["cmd"] == "blpop" and "b" in c["flags"])


@speedups_only
def test_enqueues_pushed_by_dramatiq_itself_wake_the_consumer_too(broker):
    """Retries re-enqueue through the broker's dispatch script, not through this module's Python."""
    broker.do_enqueue(QUEUE, "redis-id", new_message().encode())

    assert broker.client.llen(broker.wake_key(QUEUE)) == 1


#: The Dramatiq whose private parts notifications/broker.py was written against. After an upgrade
#: that changed them, the speed-ups are off and their tests skipped, and CI still passes; update this
#: when the broker is adapted to the new version.
SPEEDUPS_WRITTEN_FOR = "2.2.1"


@pytest.mark.skipif(
    dramatiq.__version__ != SPEEDUPS_WRITTEN_FOR, reason=f"not Dramatiq {SPEEDUPS_WRITTEN_FOR}"
)
def test_the_dramatiq_the_speedups_were_written_for_takes_them():
    """Otherwise the tests of the speed-ups would be skipped without a word."""
    assert why_speedups_cannot_run() is None


def test_the_projects_broker_runs_as_configured():
    """The broker the other test modules use: CI's second pass runs them on Dramatiq's own."""
    assert dramatiq.get_broker().speedups is SPEEDUPS_ON


def broker_warnings(caplog):
    return [record for record in caplog.records if record.name == "notifications.broker"]


def runs_a_real_actor(broker):
    """An actor's message, sent and processed by a worker on this broker."""
    done = []

    @dramatiq.actor(broker=broker, queue_name=QUEUE, actor_name="records_its_argument")
    def records_its_argument(value):
        done.append(value)

    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=1)
    worker.start()
    try:
        records_its_argument.send("hello")
        wait_until(lambda: done == ["hello"], timeout=10, message="the worker to run the message")
        wait_until(lambda: unacked(broker) == 0, timeout=10, message="the message to be acked")
    finally:
        worker.stop()


def is_dramatiqs_own_broker(broker):
    return (
        not broker.speedups
        and broker.consumer_class is dramatiq_redis._RedisConsumer
        and broker.scripts["dispatch"].script == dramatiq_redis._scripts["dispatch"]
    )


def test_a_dispatch_script_it_does_not_recognise_makes_it_dramatiqs_own_broker(
    monkeypatch, make_broker, caplog
):
    """As after a Dramatiq upgrade that changed its script: the broker starts, and says why it is slower."""
    script = dramatiq_redis._scripts["dispatch"].decode()
    reindented = script.replace(ENQUEUE_LUA, ENQUEUE_LUA.replace("    ", "  "))  # the same Lua
    monkeypatch.setitem(dramatiq_redis._scripts, "dispatch", reindented.encode())

    with caplog.at_level(logging.WARNING, logger="notifications.broker"):
        broker = make_broker(speedups=True)
        assert is_dramatiqs_own_broker(broker)
        runs_a_real_actor(broker)

    assert len(broker_warnings(caplog)) == 1
    warning = broker_warnings(caplog)[0]
    assert warning.levelno == logging.WARNING
    assert "speed-ups are off" in warning.getMessage()
    assert "dispatch script" in warning.getMessage()
    assert not broker.client.exists(broker.wake_key(QUEUE))


def test_without_speedups_it_is_dramatiqs_own_broker_and_says_nothing(make_broker, caplog):
    with caplog.at_level(logging.DEBUG, logger="notifications.broker"):
        broker = make_broker(speedups=False)
        assert is_dramatiqs_own_broker(broker)
        runs_a_real_actor(broker)

    assert broker_warnings(caplog) == []
    assert not broker.client.exists(broker.wake_key(QUEUE))


@pytest.mark.parametrize("speedups", [True, False], ids=["speedups", "no speedups"])
def test_enqueue_many_queues_every_message_for_the_workers(make_broker, speedups):
    broker = make_broker(speedups=speedups)
    done = []

    @dramatiq.actor(broker=broker, queue_name=QUEUE, actor_name="records_its_argument")
    def records_its_argument(value):
        done.append(value)

    messages = [records_its_argument.message(number) for number in range(20)]
    sent = broker.enqueue_many(messages)

    assert [message.message_id for message in sent] == [message.message_id for message in messages]
    queued = broker.client.lrange(f"{broker.namespace}:{QUEUE}", 0, -1)
    assert queued == [message.options["redis_message_id"].encode() for message in sent]
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=2)
    worker.start()
    try:
        wait_until(lambda: sorted(done) == list(range(20)), timeout=10, message="the messages to run")
        wait_until(lambda: unacked(broker) == 0, timeout=10, message="every ack to reach Redis")
    finally:
        worker.stop()


@pytest.mark.parametrize("speedups", [True, False], ids=["speedups", "no speedups"])
def test_connection_options_apply_to_a_broker_built_from_a_url(speedups):
    broker = RedisBroker(
        url="redis://127.0.0.1:6379/0", socket_connect_timeout=0.5, socket_timeout=3, speedups=speedups
    )

    options = broker.client.connection_pool.connection_kwargs
    assert (options["socket_connect_timeout"], options["socket_timeout"]) == (0.5, 3)
    assert broker.speedups is speedups


@speedups_only
def test_an_idle_consumer_waits_no_longer_than_half_the_socket_timeout(make_broker):
    fast_broker = make_broker(socket_timeout=0.2)
    assert fast_broker.longest_wait_ms == 100
    consumer = idle_consumer(fast_broker)

    assert next(consumer) is None  # a socket timeout would raise


def test_a_consumer_that_loses_redis_raises_what_dramatiq_restarts_it_on():
    from dramatiq.errors import ConnectionClosed

    unreachable = RedisBroker(
        url="redis://127.0.0.1:1/0", socket_connect_timeout=0.5, speedups=CONFIGURED_SPEEDUPS
    )
    consumer = unreachable.consume(QUEUE, prefetch=1, timeout=100)

    with pytest.raises(ConnectionClosed):
        next(consumer)


def test_the_module_imports_without_dramatiqs_private_parts():
    """A Dramatiq without them must not stop the project from starting."""
    code = (
        "import dramatiq.brokers.redis as r; del r._RedisConsumer, r._scripts; "
        "import notifications.broker as b; print(b.why_speedups_cannot_run())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "dramatiq.brokers.redis._scripts has no dispatch script"


def seen_within(condition, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def other_brokers_seen(broker):
    """Brokers that have made a dispatch call (each leaves a heartbeat), this process's excepted."""
    heartbeats = broker.client.zrange(f"{broker.namespace}:__heartbeats__", 0, -1)
    return set(heartbeats) - {broker.broker_id.encode()}


@pytest.mark.integration
def test_worker_processes_run_the_broker_the_environment_configures(worker_process, redis_broker):
    """CI's second pass reaches `manage.py rundramatiq` too: idle waking consumers block on their wake
    lists, Dramatiq's own sleep.
    """
    worker_process()
    wait_until(lambda: other_brokers_seen(redis_broker), timeout=30, message="the worker process to fetch")

    assert seen_within(lambda: blocked_clients(redis_broker) > 0, seconds=3) is SPEEDUPS_ON

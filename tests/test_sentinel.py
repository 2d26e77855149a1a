"""Redis Sentinel: REDIS_SENTINELS parsed into the broker's options, and a broker, the readiness check
and a worker process on a real redis-sentinel that names the test Redis as its master."""

import json
import shutil
import subprocess
import sys
from urllib.parse import urlsplit

import dramatiq
import pytest
import redis
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured

from notifications.broker import RedisBroker, describe_client
from notifications.health import FAILED, OK, check_redis
from notifications.models import Delivery
from notifications.services import NotificationsService
from project.settings import redis_sentinels
from tests.fakes.smtp_server import free_port
from tests.helpers import ROOT, wait_until

MASTER = "notifications-test"


def test_sentinel_addresses_are_parsed():
    assert redis_sentinels("10.0.0.1:26379, 10.0.0.2:26380") == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
    assert redis_sentinels("[::1]:26379") == [("::1", 26379)]
    assert redis_sentinels("") == []


@pytest.mark.parametrize("value", ["10.0.0.1", "10.0.0.1:port", ":26379", "10.0.0.1:26379,sentinel-b"])
def test_a_sentinel_address_without_a_port_is_refused(value):
    with pytest.raises(ImproperlyConfigured, match="REDIS_SENTINELS"):
        redis_sentinels(value)


def broker_options(**environment):
    """DRAMATIQ_BROKER["OPTIONS"] as project/settings.py builds them from this environment."""
    code = "import json; from project import settings; print(json.dumps(settings.DRAMATIQ_BROKER['OPTIONS']))"
    env = {"PATH": "/usr/bin:/bin", "DEBUG": "true", **environment}
    output = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert output.returncode == 0, output.stderr
    return json.loads(output.stdout)


def test_the_settings_give_the_broker_its_sentinels():
    options = broker_options(
        REDIS_SENTINELS="10.0.0.1:26379,10.0.0.2:26379",
        REDIS_SENTINEL_MASTER="queues",
        REDIS_SENTINEL_PASSWORD="sentinel-secret",
        REDIS_URL="redis://:secret@ignored:6379/2",
    )
    assert options["sentinels"] == [["10.0.0.1", 26379], ["10.0.0.2", 26379]]
    assert options["sentinel_master"] == "queues"
    assert options["sentinel_password"] == "sentinel-secret"
    assert options["url"] == "redis://:secret@ignored:6379/2"


def test_without_sentinels_the_broker_uses_the_url_alone():
    assert "sentinels" not in broker_options(REDIS_URL="redis://127.0.0.1:6379/2")


def test_the_url_gives_the_master_its_database_password_and_tls():
    broker = RedisBroker(
        url="rediss://:secret@ignored:1234/3",
        sentinels=[("127.0.0.1", 1)],
        sentinel_master="queues",
        socket_connect_timeout=0.5,
        middleware=[],
    )
    pool = broker.client.connection_pool
    assert pool.connection_kwargs["db"] == 3
    assert pool.connection_kwargs["password"] == "secret"
    assert "host" not in pool.connection_kwargs
    assert issubclass(pool.connection_class, redis.SSLConnection)
    assert describe_client(broker.client) == "sentinel master 'queues' via 127.0.0.1:1, database 3"


@pytest.fixture
def sentinel(redis_url, tmp_path):
    """A real redis-sentinel on a free port, monitoring the test Redis under the name MASTER."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("needs redis-server (its --sentinel mode)")
    master = urlsplit(redis_url)
    port = free_port()
    config = tmp_path / "sentinel.conf"  # Sentinel rewrites its configuration file: one of its own
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor {MASTER} {master.hostname} {master.port or 6379} 1\n"
    )
    process = subprocess.Popen(
        [server, str(config), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    probe = redis.Redis(port=port, socket_connect_timeout=0.5)
    wait_until(lambda: sentinel_answers(probe), timeout=10, message="redis-sentinel to name its master")
    yield [("127.0.0.1", port)]
    process.terminate()
    process.wait(timeout=10)


def sentinel_answers(client):
    try:
        return client.sentinel_get_master_addr_by_name(MASTER) is not None
    except redis.RedisError:
        return False


def test_a_broker_on_sentinel_enqueues_on_the_master(sentinel, redis_url, redis_broker):
    broker = RedisBroker(url=redis_url, sentinels=sentinel, sentinel_master=MASTER, middleware=[])
    probe = dramatiq.actor(lambda: None, actor_name="probe", queue_name="sentinel_probe", broker=broker)
    probe.send()
    # The message is in the test Redis database, where the project's broker (by URL) sees it too.
    assert redis_broker.client.llen("dramatiq:sentinel_probe") == 1
    assert describe_client(broker.client).startswith(f"sentinel master '{MASTER}' via 127.0.0.1:")


def test_readiness_through_sentinel_and_without_it(sentinel, redis_url, settings):
    settings.QUEUE_ENABLED = True
    broker = RedisBroker(
        url=redis_url, sentinels=sentinel, sentinel_master=MASTER, socket_connect_timeout=0.5, middleware=[]
    )
    assert check_redis(broker).status == OK
    gone = RedisBroker(
        url=redis_url, sentinels=[("127.0.0.1", free_port())], sentinel_master=MASTER, middleware=[]
    )
    result = check_redis(gone, timeout=0.5)
    assert result.status == FAILED
    assert "MasterNotFoundError" in result.error


def test_a_worker_configured_with_sentinels_delivers(sentinel, worker_process, settings):
    settings.QUEUE_ENABLED = True
    recipient = get_user_model().objects.create_user("ada")
    NotificationsService().create_inapp_notification(recipient, title="Through Sentinel", body="...")
    addresses = ",".join(f"{host}:{port}" for host, port in sentinel)
    worker = worker_process(REDIS_SENTINELS=addresses, REDIS_SENTINEL_MASTER=MASTER)
    wait_until(
        lambda: Delivery.objects.filter(status=Delivery.Status.SENT).exists(),
        timeout=30,
        message=f"the in-app notification to be delivered; worker log:\n{worker.log()}",
    )
    assert f"sentinel master '{MASTER}'" in worker.log()


@pytest.fixture
def replicated_redis(tmp_path):
    """A Redis master and its replica of the test's own, and a Sentinel that fails over within seconds."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("needs redis-server (its --sentinel mode)")
    master_port, replica_port, sentinel_port = free_port(), free_port(), free_port()
    common = ["--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)]
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\nlogfile {tmp_path / 'sentinel.log'}\n"
        f"sentinel monitor failover 127.0.0.1 {master_port} 1\n"
        "sentinel down-after-milliseconds failover 2000\n"
        "sentinel failover-timeout failover 2000\n"
    )
    commands = {
        "master": [server, "--port", str(master_port), *common, "--dbfilename", "master.rdb"],
        "replica": [
            server,
            "--port",
            str(replica_port),
            *common,
            "--replicaof",
            "127.0.0.1",
            str(master_port),
        ],
        "sentinel": [server, str(config), "--sentinel"],
    }
    processes = {
        name: subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        for name, command in commands.items()
    }
    sentinel = redis.Redis(port=sentinel_port, socket_connect_timeout=0.5, decode_responses=True)
    wait_until(lambda: replicas_known(sentinel), timeout=20, message="the Sentinel to find the replica")
    yield {
        "sentinels": [("127.0.0.1", sentinel_port)],
        "master": processes["master"],
        "sentinel": sentinel,
        "replica_port": replica_port,
        "log": tmp_path / "sentinel.log",
    }
    for process in processes.values():
        process.terminate()
    for process in processes.values():
        process.wait(timeout=10)


def replicas_known(sentinel):
    try:
        return any(
            replica["is_slave"] and not replica["is_sdown"]
            for replica in sentinel.sentinel_slaves("failover")
        )
    except redis.RedisError:
        return False


def test_after_a_failover_the_broker_enqueues_on_the_new_master(replicated_redis, settings):
    settings.QUEUE_ENABLED = True
    broker = RedisBroker(
        url="redis://127.0.0.1:1/0",  # its host and port are not used
        sentinels=replicated_redis["sentinels"],
        sentinel_master="failover",
        socket_connect_timeout=0.5,
        socket_timeout=2,
        middleware=[],
    )
    probe = dramatiq.actor(lambda: None, actor_name="probe", queue_name="failover_probe", broker=broker)
    probe.send()
    wait_until(lambda: broker.client.wait(1, 1000) == 1, timeout=15, message="the replica to have it")

    replicated_redis["master"].terminate()
    replicated_redis["master"].wait(timeout=10)
    sentinel = replicated_redis["sentinel"]
    new_master = ("127.0.0.1", replicated_redis["replica_port"])
    wait_until(
        lambda: sentinel.sentinel_get_master_addr_by_name("failover") == new_master,
        timeout=30,
        message=f"the Sentinel to promote the replica (its log: {replicated_redis['log']})",
    )

    wait_until(lambda: sends(probe), timeout=15, message="an enqueue on the new master")
    assert broker.client.connection_pool.get_master_address() == new_master
    assert redis.Redis(port=new_master[1]).llen("dramatiq:failover_probe") >= 2
    assert check_redis(broker).status == OK


def sends(actor):
    try:
        actor.send()
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    return True

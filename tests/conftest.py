import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import dramatiq
import pytest
from django.db import connection
from dramatiq.brokers.stub import StubBroker

from tests.fakes.smtp_server import FakeSMTP
from tests.fakes.twilio_server import FakeTwilio

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def booted_broker():
    """Start the middleware's background parts (the time-limit watcher), as a worker process would."""
    broker = dramatiq.get_broker()
    broker.emit_after("process_boot")
    return broker


@contextlib.contextmanager
def actors_moved_to(broker):
    """Declare every actor of the project's broker on ``broker`` and make it the global one, for a while."""
    real = dramatiq.get_broker()
    actors = list(real.actors.values())
    dramatiq.set_broker(broker)
    for actor in actors:
        actor.broker = broker
        broker.declare_actor(actor)
    try:
        yield broker
    finally:
        for actor in actors:
            actor.broker = real
        dramatiq.set_broker(real)


@pytest.fixture
def stub_broker():
    """The project's actors and middleware on an in-memory broker, for tests that need no Redis."""
    with actors_moved_to(StubBroker(middleware=list(dramatiq.get_broker().middleware))) as broker:
        yield broker


@pytest.fixture
def unreachable_redis(settings, monkeypatch):
    """Queue mode on, with the broker pointing at a closed port (as with REDIS_URL=redis://127.0.0.1:1)."""
    from failedjobs import dispatch
    from notifications.broker import RedisBroker

    settings.QUEUE_ENABLED = True
    monkeypatch.setattr(dispatch, "_broker_down_until", 0.0)
    broker = RedisBroker(url="redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    broker.enqueue_attempts = []
    original_enqueue = broker.enqueue

    def counting_enqueue(message, **options):
        broker.enqueue_attempts.append(message.message_id)
        return original_enqueue(message, **options)

    monkeypatch.setattr(broker, "enqueue", counting_enqueue)
    with actors_moved_to(broker):
        yield broker


@pytest.fixture
def stub_worker(stub_broker, transactional_db):
    worker = dramatiq.Worker(stub_broker, worker_timeout=50, worker_threads=2)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def redis_broker():
    broker = dramatiq.get_broker()
    broker.client.flushdb()
    yield broker
    broker.client.flushdb()


@pytest.fixture
def worker(redis_broker, transactional_db):
    """A real Dramatiq worker, in threads of this process, consuming from Redis."""
    worker = dramatiq.Worker(redis_broker, worker_timeout=50, worker_threads=4)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def twilio_server():
    server = FakeTwilio().start()
    yield server
    server.stop()


@pytest.fixture
def fake_twilio(twilio_server, settings):
    twilio_server.reset()
    settings.TWILIO_API_BASE_URL = twilio_server.url
    yield twilio_server
    twilio_server.reset()


@pytest.fixture(scope="session")
def smtp_server():
    server = FakeSMTP().start()
    yield server
    server.stop()


@pytest.fixture
def fake_smtp(smtp_server, settings):
    """Email goes through Django's SMTP backend to a local aiosmtpd server."""
    smtp_server.reset()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = smtp_server.host
    settings.EMAIL_PORT = smtp_server.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield smtp_server
    smtp_server.reset()


def test_database_url():
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class WorkerProcess:
    """``manage.py rundramatiq`` in a child process, configured only through the environment."""

    def __init__(self, env, log_path):
        self.env = env
        self.log_path = log_path
        self.process = None

    def start(self):
        log = open(self.log_path, "ab")  # noqa: SIM115
        command = [sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads", "2"]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=log, stderr=log, start_new_session=True
        )
        return self

    def kill(self):
        """SIGKILL the master and its forked worker processes: nothing gets to clean up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self):
        return Path(self.log_path).read_text(errors="replace")


@pytest.fixture
def worker_process(redis_broker, transactional_db, tmp_path, twilio_server, smtp_server):
    """Start real worker processes against the test database, Redis and the local fakes."""
    if connection.vendor != "postgresql":
        pytest.skip("worker processes need the PostgreSQL test database")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
        "QUEUE_ENABLED": "true",
        "NOTIFICATIONS_MIN_BACKOFF_MS": "10",
        "NOTIFICATIONS_MAX_BACKOFF_MS": "40",
        "NOTIFICATIONS_TIME_LIMIT_MS": "3000",
        "DRAMATIQ_HEARTBEAT_TIMEOUT_MS": "2000",
        "DRAMATIQ_MAINTENANCE_CHANCE": "1000000",
        "EMAIL_URL": f"smtp://{smtp_server.host}:{smtp_server.port}",
        "DEFAULT_FROM_EMAIL": "notifications@example.com",
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": "test-auth-token",
        "TWILIO_SMS_FROM": "+15005550006",
        "TWILIO_WHATSAPP_FROM": "+14155238886",
        "TWILIO_API_BASE_URL": twilio_server.url,
        "CONN_MAX_AGE": "0",
    }
    started = []

    def start(**overrides):
        process = WorkerProcess({**env, **overrides}, tmp_path / f"worker-{len(started)}.log").start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()

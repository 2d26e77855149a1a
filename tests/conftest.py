"""Fixtures, and the markers that say which services a test needs.

A test is marked ``redis``, ``postgresql`` or ``worker`` explicitly, or because it uses a fixture that
needs one (SERVICE_FIXTURES). Where a marked test's service cannot be reached it is skipped with the
reason, except in CI (CI=true), where it fails: CI runs every test. ``scripts/test --unit`` runs the
unmarked tests only, on SQLite and an in-memory broker.
"""

import contextlib
import functools
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import dramatiq
import psycopg
import pytest
import redis
from django.conf import settings
from django.db import connection
from dramatiq.brokers.stub import StubBroker

from tests.fakes.smtp_server import FakeSMTP
from tests.fakes.twilio_server import FakeTwilio
from tests.helpers import ROOT, database_url

#: The markers a test gets from the fixtures it uses, directly or through other fixtures. A real
#: worker writes to the database from its own threads or processes while the test reads it: SQLite's
#: shared in-memory test database then fails with "database table is locked".
SERVICE_FIXTURES = {
    "redis": {"redis_url", "redis_broker", "worker", "worker_process"},
    "postgresql": {"worker", "worker_process", "process_env"},
    "worker": {"worker", "worker_process"},
    "browser": {"browser"},
}


@pytest.hookimpl(tryfirst=True)  # before -m selects on the markers
def pytest_collection_modifyitems(items):
    for item in items:
        used = set(item.fixturenames)
        for marker, fixtures in SERVICE_FIXTURES.items():
            if used & fixtures and item.get_closest_marker(marker) is None:
                item.add_marker(marker)


@pytest.hookimpl(tryfirst=True)  # before any fixture is set up
def pytest_runtest_setup(item):
    for service in ("redis", "postgresql", "browser"):
        if item.get_closest_marker(service) is not None:
            reason = unavailable(service)
            if reason:
                service_missing(reason)


def service_missing(reason):
    """Skip the test, or fail it in CI, where every service is expected to be there."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: service-backed tests must run)", pytrace=False)
    pytest.skip(reason)


@functools.cache
def unavailable(service):
    """Why ``service`` cannot be used by this run, or None when it can. Checked once a run."""
    if service == "redis":
        url = settings.REDIS_URL
        try:
            with redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2) as client:
                client.ping()
        except redis.RedisError as error:
            parts = urlsplit(url)  # no password in the reason
            return f"needs Redis: {parts.hostname}:{parts.port or 6379}{parts.path} does not answer ({error})"
    elif service == "postgresql":
        if connection.vendor != "postgresql":
            return f"needs PostgreSQL: the test database is {connection.vendor} (see TEST_DATABASE_URL)"
        db = connection.settings_dict
        where = f"{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}"
        try:
            psycopg.connect(
                host=db["HOST"] or None,
                port=db["PORT"] or None,
                user=db["USER"] or None,
                password=db["PASSWORD"] or None,
                dbname="postgres",
                connect_timeout=2,
            ).close()
        except psycopg.Error as error:
            return f"needs PostgreSQL: {where} does not answer ({error})"
    elif service == "browser":
        missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
        if missing:
            missing_paths = ", ".join(missing)
            return f"needs headless Chromium: {missing_paths} missing (apt: chromium, chromium-driver)"
    return None


@pytest.fixture(autouse=True)
def broker_not_known_down(monkeypatch):
    """A failed enqueue makes failedjobs.dispatch skip the broker for 5 s: not into the next test."""
    from failedjobs import dispatch

    monkeypatch.setattr(dispatch, "_broker_down_until", 0.0)


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
    from notifications.broker import RedisBroker

    settings.QUEUE_ENABLED = True
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


@pytest.fixture(autouse=True)
def forget_stopped_workers():
    """A Dramatiq Worker leaves its middleware on the broker when it stops, and that middleware starts
    consumers for every queue declared afterwards (as when a test gives the actors back to the
    project's broker): threads that would fetch from Redis for the rest of the run, until the
    connection pool ran dry. After each test, the middleware of stopped workers goes."""
    broker = dramatiq.get_broker()  # now: a test may make get_broker() refuse
    yield
    broker.middleware[:] = [each for each in broker.middleware if not of_a_stopped_worker(each)]


def of_a_stopped_worker(middleware):
    worker = getattr(middleware, "worker", None)
    if not isinstance(worker, dramatiq.Worker):
        return False
    return not any(thread.is_alive() for thread in worker.workers)


@pytest.fixture(scope="session")
def redis_url():
    """The test suite's Redis database (REDIS_URL); the tests that use it are marked redis."""
    return settings.REDIS_URL


@pytest.fixture
def redis_broker(redis_url):
    """The project's broker, on the test Redis database, emptied before and after the test."""
    broker = dramatiq.get_broker()
    if not hasattr(broker, "client"):
        service_missing(f"needs Redis: the project's broker is a {type(broker).__name__} (TEST_BROKER=stub)")
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


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="session")
def live_server(django_db_setup):
    """pytest-django's live server, stopped before the test database is dropped (its threads hold
    connections that would otherwise keep the database from being dropped)."""
    from pytest_django.live_server_helper import LiveServer

    server = LiveServer("127.0.0.1")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser_session(live_server):
    """One headless Chromium for the run, from the distribution's packages (never downloaded). It
    quits before the live server stops: its open connections hold server threads and their database
    connections."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture
def browser(browser_session):
    """The session's Chromium with no cookies left from the previous test."""
    browser_session.delete_all_cookies()
    yield browser_session
    browser_session.delete_all_cookies()


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
def process_env(redis_url, transactional_db, twilio_server, smtp_server):
    """The environment of a project process (a worker, a command) on the test database, Redis and fakes."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "QUEUE_ENABLED": "true",
        "NOTIFICATIONS_MIN_BACKOFF_MS": "10",
        "NOTIFICATIONS_MAX_BACKOFF_MS": "40",
        "NOTIFICATIONS_TIME_LIMIT_MS": "3000",
        "NOTIFICATIONS_BREAKER_THRESHOLD": "0",  # as in tests/settings.py
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


@pytest.fixture
def worker_process(process_env, redis_broker, tmp_path):
    """Start real worker processes against the test database, Redis and the local fakes."""
    env = process_env
    started = []

    def start(**overrides):
        process = WorkerProcess({**env, **overrides}, tmp_path / f"worker-{len(started)}.log").start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()

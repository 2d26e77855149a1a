"""/healthz, /readyz and manage.py notifications_health: what they answer with the services up and down."""

import io
import json
import os
import socket
import subprocess
import sys
import time

import dramatiq
import pytest
from django.core.management import CommandError, call_command

from notifications import health
from notifications.broker import RedisBroker
from tests.helpers import ROOT


def call_health(*args):
    out = io.StringIO()
    try:
        call_command("notifications_health", *args, stdout=out)
    except CommandError as error:
        return out.getvalue(), error
    return out.getvalue(), None


def assert_not_cached(response):
    assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db
def test_healthz_answers_without_the_database_or_redis(client, django_assert_num_queries, monkeypatch):
    def no_broker():
        raise AssertionError("/healthz looked at the broker")

    monkeypatch.setattr(dramatiq, "get_broker", no_broker)

    with django_assert_num_queries(0):
        response = client.get("/healthz")
        head = client.head("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert head.status_code == 200
    assert_not_cached(response)


@pytest.mark.postgresql
@pytest.mark.django_db
def test_readyz_is_ok_when_postgresql_and_redis_answer(client, redis_broker):
    response = client.get("/readyz")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "redis"}
    for check in body["checks"].values():
        assert check["status"] == "ok"
        assert isinstance(check["ms"], float)
        assert "error" not in check
    assert_not_cached(response)


@pytest.mark.django_db
def test_readyz_fails_naming_redis_when_the_broker_is_unreachable(client, unreachable_redis):
    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failed"
    assert body["checks"]["database"]["status"] == "ok"
    redis_check = body["checks"]["redis"]
    assert redis_check["status"] == "failed"
    assert redis_check["error"].startswith("ConnectionError: ")
    assert "127.0.0.1:1" in redis_check["error"]
    assert_not_cached(response)


@pytest.mark.django_db
def test_readyz_with_the_queue_off_does_not_use_redis(client, settings, monkeypatch):
    settings.QUEUE_ENABLED = False
    monkeypatch.setattr(dramatiq, "get_broker", lambda: RedisBroker(url="redis://127.0.0.1:1/0"))

    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["redis"] == {"status": "not used", "ms": 0.0, "detail": "QUEUE_ENABLED is off"}


@pytest.mark.django_db
def test_probes_are_not_redirected_to_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.QUEUE_ENABLED = False

    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/admin/").status_code == 301


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers, as a hung Redis does."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_a_redis_that_never_answers_fails_the_check_after_its_timeout(settings, silent_port):
    settings.QUEUE_ENABLED = True
    broker = RedisBroker(url=f"redis://127.0.0.1:{silent_port}/0", socket_timeout=5.0, speedups=False)

    result = health.check_redis(broker)

    assert result.status == "failed"
    assert result.error.startswith("TimeoutError: ")
    assert 900 <= result.ms < 2500, result


def test_the_redis_check_is_not_retried(settings):
    """A client made from host and port retries a refused connection (redis-py's default).

    The check's connection does not: Redis being down is reported at once.
    """
    settings.QUEUE_ENABLED = True
    broker = RedisBroker(host="127.0.0.1", port=1, speedups=False)

    result = health.check_redis(broker)

    assert result.status == "failed"
    assert result.ms < 500, result


def test_credentials_are_masked_in_errors():
    text = (
        "Error connecting to redis://user:pa55@10.0.0.5:6379/0 and rediss://:pa55@cache:6380, "
        "host=db password=pa55 port=5432; the password is hunter2"
    )

    masked = health.mask_secrets(text, secrets=["hunter2", ""])

    assert "pa55" not in masked
    assert "hunter2" not in masked
    assert "redis://***@10.0.0.5:6379/0" in masked
    assert "rediss://***@cache:6380" in masked
    assert "password=*** port=5432" in masked


@pytest.mark.postgresql
@pytest.mark.django_db
def test_the_command_exits_0_with_one_line_per_check_when_healthy(redis_broker):
    out, error = call_health()

    assert error is None, out
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("database: ok (") and lines[0].endswith(" ms)")
    assert lines[1].startswith("redis: ok (")


@pytest.mark.postgresql
@pytest.mark.django_db
def test_the_command_prints_readyz_json(client, redis_broker):
    out, error = call_health("--json")

    assert error is None, out
    body = json.loads(out)
    assert body["status"] == "ok"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok",
        "redis": "ok",
    }
    assert set(body) == set(client.get("/readyz").json())


@pytest.mark.django_db
def test_the_command_fails_naming_redis_when_it_is_down(unreachable_redis):
    out, error = call_health()

    assert error is not None
    assert str(error) == "Unhealthy: redis failed."
    lines = out.splitlines()
    assert lines[0].startswith("database: ok (")
    assert lines[1].startswith("redis: failed after ")
    assert "ConnectionError: Error 111 connecting to 127.0.0.1:1" in lines[1]

    out, error = call_health("--json")

    assert error is not None
    body = json.loads(out)
    assert body["status"] == "failed"
    assert body["checks"]["redis"]["status"] == "failed"


def run_command_in_a_process(*args, **environment):
    """manage.py notifications_health on project.settings, configured by ``environment`` only."""
    keep = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("REDIS_", "DATABASE_", "QUEUE_", "TEST_"))
    }
    env = {**keep, "DJANGO_SETTINGS_MODULE": "project.settings", "SECRET_KEY": "health-test", **environment}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "manage.py", "notifications_health", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, time.monotonic() - started


def test_the_command_fails_naming_the_database_when_it_is_down():
    result, elapsed = run_command_in_a_process(
        DATABASE_URL="postgres://postgres:db-secret-pw@127.0.0.1:1/notifications",
        DATABASE_CONNECT_TIMEOUT="2",
        QUEUE_ENABLED="false",
    )

    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("database: failed after "), result.stdout
    assert "OperationalError" in lines[0]
    assert lines[1] == "redis: not used (QUEUE_ENABLED is off)"
    assert "Unhealthy: database failed." in result.stderr
    assert "db-secret-pw" not in result.stdout + result.stderr
    assert elapsed < 15, f"the command took {elapsed:.1f} s"


def test_the_command_reports_both_when_the_database_and_redis_are_down():
    result, elapsed = run_command_in_a_process(
        "--json",
        DATABASE_URL="postgres://postgres:db-secret-pw@127.0.0.1:1/notifications",
        REDIS_URL="redis://:redis-secret-pw@127.0.0.1:1/0",
        QUEUE_ENABLED="true",
    )

    assert result.returncode == 1, result.stdout + result.stderr
    body = json.loads(result.stdout)
    assert body["status"] == "failed"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "failed",
        "redis": "failed",
    }
    assert "Unhealthy: database, redis failed." in result.stderr
    output = result.stdout + result.stderr
    assert "db-secret-pw" not in output and "redis-secret-pw" not in output
    assert elapsed < 15, f"the command took {elapsed:.1f} s"

"""scripts/run --queue: Redis started when it does not answer, then web, worker and scheduler under honcho."""

import contextlib
import os
import re
import signal
import subprocess

import pytest
import redis
import requests
from django.contrib.auth import get_user_model

from notifications.broker import RedisBroker
from notifications.models import Delivery
from notifications.services import NotificationsService
from tests.conftest import actors_moved_to
from tests.fakes.smtp_server import free_port
from tests.helpers import ROOT, broker_speedups_off, wait_until


def ready(port):
    try:
        response = requests.get(f"http://127.0.0.1:{port}/readyz", headers={"Host": "localhost"}, timeout=2)
    except requests.RequestException:
        return False
    return response.status_code == 200 and response.json()["checks"]["redis"]["status"] == "ok"


def signs_in(port, username, password):
    """Whether the admin's login form takes these credentials."""
    session = requests.Session()
    login = f"http://127.0.0.1:{port}/admin/login/"
    form = session.get(login, timeout=5).text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)[1]
    fields = {"username": username, "password": password, "csrfmiddlewaretoken": token, "next": "/admin/"}
    response = session.post(login, data=fields, headers={"Referer": login}, timeout=5, allow_redirects=False)
    return response.status_code == 302 and response.headers["Location"] == "/admin/"


@pytest.fixture
def own_redis_port():
    """A free port for the Redis that scripts/run starts; that Redis is shut down afterwards."""
    port = free_port()
    yield port
    with contextlib.suppress(redis.RedisError):
        redis.Redis(port=port, socket_connect_timeout=1).shutdown(nosave=True)


@pytest.mark.skipif(
    broker_speedups_off(), reason="independent of the broker's speed-ups: CI's first pass runs it"
)
def test_run_queue_starts_redis_web_worker_and_scheduler(process_env, own_redis_port, tmp_path, settings):
    web_port = free_port()
    redis_url = f"redis://127.0.0.1:{own_redis_port}/0"
    env = {
        **process_env,
        "PORT": str(web_port),
        "REDIS_URL": redis_url,
        "REDIS_DIR": str(tmp_path / "redis"),
        "ADMIN_USERNAME": "newcomer",
        "ADMIN_PASSWORD": "first-day",
    }
    del env["QUEUE_ENABLED"]  # --queue turns it on
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["scripts/run", "--queue"], cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
        )
    try:
        wait_until(lambda: ready(web_port), timeout=90, message=f"/readyz; log:\n{log_path.read_text()}")
        assert redis.Redis(port=own_redis_port).config_get("appendonly") == {"appendonly": "yes"}
        assert signs_in(web_port, "newcomer", "first-day")

        # A notification sent through that Redis is delivered by the worker scripts/run started.
        settings.QUEUE_ENABLED = True
        with actors_moved_to(RedisBroker(url=redis_url)):
            recipient = get_user_model().objects.create_user("ada")
            delivery = NotificationsService().create_inapp_notification(recipient, title="Hello", body="")
        wait_until(
            lambda: Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.SENT,
            timeout=30,
            message=f"the worker to deliver; log:\n{log_path.read_text()}",
        )
        output = log_path.read_text()
        assert f"Starting Redis on 127.0.0.1:{own_redis_port}" in output
        assert f"web: queue on, broker redis://127.0.0.1:{own_redis_port}/0" in output
        assert f"worker: queue on, broker redis://127.0.0.1:{own_redis_port}/0" in output
        assert "Starting Periodiq" in output
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_run_refuses_an_unknown_argument():
    result = subprocess.run(["scripts/run", "--queu"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    assert result.returncode == 2
    assert "usage: scripts/run [--queue]" in result.stderr

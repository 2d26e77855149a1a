"""The live stream over ASGI: uvicorn in a child process on the test database and Redis, a real
worker writing the notifications, and an HTTP client reading the Server-Sent Events."""

import http.client
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import redis
from django.test import Client

from notifications import stream
from notifications.models import InAppNotification
from notifications.services import NotificationsService
from tests.helpers import ROOT, wait_until


class AsgiServer:
    """``uvicorn project.asgi:application`` on a socket bound here (port 0: a free one)."""

    def __init__(self, env, log_path):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(128)
        self.port = self.socket.getsockname()[1]
        fd = self.socket.fileno()
        command = [sys.executable, "-m", "uvicorn", "project.asgi:application", "--fd", str(fd)]
        self.log = open(log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [*command, "--log-level", "warning", "--timeout-graceful-shutdown", "1"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=self.log,
            pass_fds=[fd],
            start_new_session=True,
        )

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.socket.close()
        self.log.close()


@pytest.fixture
def asgi_server(process_env, tmp_path):
    server = AsgiServer({**process_env, "NOTIFICATIONS_STREAM_HEARTBEAT_S": "0.5"}, tmp_path / "uvicorn.log")
    wait_until(lambda: answers(server.port), timeout=30, message="uvicorn to answer")
    yield server
    server.stop()


def answers(port):
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/healthz")
        answered = connection.getresponse().status > 0
        connection.close()
        return answered
    except OSError:
        return False


class EventStream:
    """One open stream, read event by event (comment lines are returned as heartbeats)."""

    def __init__(self, port, cookie, last_event_id=None):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Accept": "text/event-stream", "Cookie": cookie}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.connection.request("GET", "/notifications/stream/", headers=headers)
        self.response = self.connection.getresponse()

    def next(self):
        event = {}
        while True:
            line = self.response.readline().decode().rstrip("\n")
            if line.startswith(":"):
                return {"heartbeat": line}
            if not line:
                if event:
                    return event
                continue
            field, _, value = line.partition(": ")
            event[field] = value

    def next_event(self, name):
        """The next event called ``name``, skipping heartbeats and other events."""
        while True:
            event = self.next()
            if event.get("event") == name:
                return event

    def close(self):
        self.connection.close()


def session_cookie(user):
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def subscribers(user):
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    return dict(client.pubsub_numsub(stream.channel_name(user.pk)))[stream.channel_name(user.pk).encode()]


@pytest.fixture
def ada(django_user_model):
    return django_user_model.objects.create(username="ada")


def test_a_notification_written_by_a_worker_reaches_the_open_stream(
    asgi_server, worker_process, ada, django_user_model
):
    bob = django_user_model.objects.create(username="bob")
    events = EventStream(asgi_server.port, session_cookie(ada))
    assert events.response.status == 200
    assert events.response.headers["Content-Type"] == "text/event-stream"
    assert events.next() == {"event": "unread", "id": "0", "data": '{"unread": 0}'}
    worker_process()
    service = NotificationsService()

    service.create_inapp_notification(bob, title="For Bob")
    service.create_inapp_notification(ada, title="Hello", body="A body", link="/x")

    notification = events.next_event("notification")
    written = InAppNotification.objects.get(recipient=ada)
    assert notification["id"] == str(written.pk)
    assert '"title": "Hello"' in notification["data"] and '"link": "/x"' in notification["data"]
    assert events.next_event("unread")["data"] == '{"unread": 1}'
    events.close()
    wait_until(lambda: subscribers(ada) == 0, message="the server to let go of the closed stream")


def test_a_reconnecting_stream_gets_what_it_missed_then_live_ones(asgi_server, worker, ada):
    service = NotificationsService()
    service.create_inapp_notification(ada, title="Before")
    wait_until(lambda: InAppNotification.objects.count() == 1, message="the first notification")
    events = EventStream(asgi_server.port, session_cookie(ada))
    first = events.next()
    assert first["event"] == "unread" and first["id"] == str(InAppNotification.objects.get().pk)
    assert events.next() == {"heartbeat": ": heartbeat"}  # an idle stream, 0.5 s later
    events.close()

    for title in ("Missed 1", "Missed 2"):
        service.create_inapp_notification(ada, title=title)
    wait_until(lambda: InAppNotification.objects.count() == 3, message="the missed notifications")
    resumed = EventStream(asgi_server.port, session_cookie(ada), last_event_id=first["id"])
    replayed = [resumed.next_event("notification") for _ in range(2)]
    # In the order they were written (the worker's threads may take them in either order).
    assert {json.loads(event["data"])["title"] for event in replayed} == {"Missed 1", "Missed 2"}
    assert int(first["id"]) < int(replayed[0]["id"]) < int(replayed[1]["id"])
    assert resumed.next_event("unread")["data"] == '{"unread": 3}'

    service.create_inapp_notification(ada, title="Live")
    live = resumed.next_event("notification")
    assert '"title": "Live"' in live["data"]
    assert int(live["id"]) > int(replayed[1]["id"])
    resumed.close()


def test_marking_read_updates_the_unread_count_on_the_stream(asgi_server, redis_broker, ada):
    InAppNotification.objects.create(recipient=ada, title="x")
    events = EventStream(asgi_server.port, session_cookie(ada))
    assert events.next()["data"] == '{"unread": 1}'
    client = Client()
    client.force_login(ada)

    client.post("/notifications/api/inbox/read-all/")

    assert events.next_event("unread")["data"] == '{"unread": 0}'
    events.close()


def test_the_stream_needs_a_sign_in(asgi_server):
    connection = http.client.HTTPConnection("127.0.0.1", asgi_server.port, timeout=10)
    connection.request("GET", "/notifications/stream/")
    assert connection.getresponse().status == 401
    connection.close()


def test_publishing_without_redis_does_not_fail_the_write(settings, monkeypatch, db):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    monkeypatch.setattr(stream, "_client", None)
    monkeypatch.setattr(stream, "_down_until", 0.0)
    started = time.monotonic()

    stream.publish(1, {"type": "unread"})
    stream.publish(1, {"type": "unread"})  # skipped: Redis failed a moment ago

    assert stream._down_until > started
    monkeypatch.setattr(stream, "_client", None)


def test_open_streams_share_the_servers_database_connections(asgi_server, redis_broker, ada):
    from django.db import connection

    def other_connections():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return cursor.fetchone()[0]

    # Other tests' servers (the live server's threads) may hold connections to this database too.
    before = other_connections()
    pool = min(32, (os.cpu_count() or 1) + 4)  # the event loop's thread pool
    streams = [EventStream(asgi_server.port, session_cookie(ada)) for _ in range(pool + 4)]
    for events in streams:
        assert events.next()["event"] == "unread"

    after = other_connections()
    assert after > 0
    assert after - before <= pool  # not one a stream
    for events in streams:
        events.close()

"""A database that does not answer makes a call fail within a bound, not hang it."""

import socket
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from tests.helpers import ROOT, database_url

SEND = (
    "import django; django.setup(); from notifications.services import NotificationsService\n"
    "try:\n"
    "    NotificationsService().send_email('ada@example.com', subject='Hi', text='x', dedup_key='k',\n"
    "                                      dedup_window=__import__('datetime').timedelta(hours=1))\n"
    "except Exception as error:\n"
    "    print(type(error).__name__, error)\n"
)


def timed_send(env):
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", SEND], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    return time.monotonic() - started, result.stdout + result.stderr


@pytest.fixture
def silent_server():
    """A port that accepts connections and never says a word, as a hung PostgreSQL does."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted = []

    def accept():
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()
    for connection in accepted:
        connection.close()


def test_a_database_that_never_answers_fails_the_call_after_the_connect_timeout(process_env, silent_server):
    env = {
        **process_env,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{silent_server}/notifications",
        "DATABASE_CONNECT_TIMEOUT": "2",
    }

    elapsed, output = timed_send(env)

    assert "OperationalError" in output, output
    assert elapsed < 15, f"the call took {elapsed:.1f} s"


def test_a_statement_stuck_on_a_lock_fails_after_the_statement_timeout(process_env):
    env = {**process_env, "DATABASE_STATEMENT_TIMEOUT_MS": "1000", "QUEUE_ENABLED": "false"}
    dsn = env["DATABASE_URL"].replace("postgres://", "postgresql://")
    with psycopg.connect(dsn) as holder:
        # The lock a call with this dedup key takes (services.lock_key), held by another transaction.
        holder.execute("SELECT pg_advisory_xact_lock(hashtextextended('k', 0))")

        elapsed, output = timed_send(env)

    assert "OperationalError canceling statement due to statement timeout" in output, output
    assert 1 <= elapsed < 15, f"the call took {elapsed:.1f} s"


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_with_health_checks_a_call_after_a_database_restart_gets_a_fresh_connection(
    stub_broker, django_user_model
):
    from django.core.signals import request_started
    from django.db import connection

    from notifications.models import Delivery
    from notifications.services import NotificationsService

    user = django_user_model.objects.create(username="ada")
    connection.settings_dict["CONN_HEALTH_CHECKS"] = True
    connection.close()  # the setting is read when connecting
    connection.ensure_connection()
    try:
        pid = connection.connection.info.backend_pid
        with psycopg.connect(
            database_url().replace("postgres://", "postgresql://"), autocommit=True
        ) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])

        request_started.send(sender=None)  # as the next web request or worker message does
        delivery = NotificationsService().create_inapp_notification(user, title="after the restart")
        new_pid = connection.connection.info.backend_pid
    finally:
        connection.settings_dict["CONN_HEALTH_CHECKS"] = False
        connection.close()

    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.QUEUED
    assert new_pid != pid

"""Alerts to ADMINS (locmem mail) and to a webhook (a local HTTP server): once per group and window."""

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.utils import timezone

from failedjobs import alerts
from failedjobs.models import Alert, FailedJob
from tests.factories import failed_job

pytestmark = pytest.mark.django_db


class Webhook:
    """A local HTTP server that keeps the JSON posted to it, and answers ``status``."""

    def __init__(self):
        self.posted = []
        self.status = 200
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                webhook.posted.append(json.loads(body))
                self.send_response(webhook.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T0/B0/secret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(settings):
    server = Webhook()
    settings.FAILED_JOBS_ALERT_WEBHOOK_URL = server.url
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    yield server
    server.stop()


def test_a_new_error_group_is_alerted_once_by_email_and_webhook(webhook):
    for number in ("+33612345678", "+33698765432"):
        failed_job("sms", number)

    sent = alerts.check_and_send()
    again = alerts.check_and_send()

    assert len(sent) == 1 and sent[0].startswith(
        "New error group: notifications.exceptions.PermanentDeliveryError"
    )
    assert "(2 in 10 min)" in sent[0]
    assert again == []
    [email] = mail.outbox
    assert email.to == ["ops@example.com"] and "New error group" in email.body
    assert [post["text"].splitlines()[1] for post in webhook.posted] == sent
    assert "+33612345678" not in email.body + json.dumps(webhook.posted)


def test_a_second_group_gets_its_own_alert(webhook):
    failed_job("sms")
    alerts.check_and_send()
    failed_job("sms", exception_class="builtins.ValueError", error_code="")

    sent = alerts.check_and_send()

    assert len(sent) == 1 and "builtins.ValueError" in sent[0]
    assert len(mail.outbox) == 2


def test_a_group_growing_past_the_threshold(webhook, settings):
    settings.FAILED_JOBS_ALERT_THRESHOLD = 3
    now = timezone.now()
    failed_job("sms", failed_at=now - timedelta(hours=2))  # seen before: not new
    for _ in range(2):
        failed_job("sms")
    assert alerts.check_and_send() == []

    failed_job("sms")
    sent = alerts.check_and_send()

    assert len(sent) == 1 and sent[0].startswith("3 failures in 10 min: ")
    assert alerts.check_and_send() == []
    later = now + timedelta(seconds=settings.FAILED_JOBS_ALERT_REPEAT_AFTER_S + 60)
    for _ in range(3):
        failed_job("sms", failed_at=later)
    assert len(alerts.check_and_send(now=later)) == 1  # the next window, past the repeat delay


def test_dead_letters_left_in_redis_are_alerted(webhook, redis_broker, settings):
    old = (time.time() - settings.FAILED_JOBS_ALERT_DEAD_LETTER_AGE_S - 60) * 1000
    redis_broker.client.zadd("dramatiq:sms.XQ", {"recent": time.time() * 1000})
    assert alerts.check_and_send() == []

    redis_broker.client.zadd("dramatiq:sms.XQ", {"old": old})
    sent = alerts.check_and_send()

    assert len(sent) == 1 and "Dead letters left in Redis for more than 15 min (1 in sms)" in sent[0]
    assert alerts.check_and_send() == []


def test_an_alert_that_fails_to_send_is_logged_and_never_alerts_about_itself(webhook, caplog, settings):
    webhook.status = 500
    settings.EMAIL_BACKEND = "tests.test_alerts.BrokenEmail"
    failed_job("sms")

    sent = alerts.check_and_send()

    assert len(sent) == 1
    assert len(webhook.posted) == 1
    assert "Could not email the alert" in caplog.text and "Could not post the alert" in caplog.text
    assert "secret" not in caplog.text  # the webhook's URL is its secret
    assert FailedJob.objects.count() == 1
    assert alerts.check_and_send() == []


def test_the_alert_jobs_own_failures_are_not_alerted(webhook):
    failed_job("sms", actor_name=alerts.ALERT_ACTOR, exception_class="builtins.RuntimeError", error_code="")
    assert alerts.check_and_send() == []
    assert mail.outbox == [] and webhook.posted == []


class BrokenEmail:
    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise ConnectionRefusedError("the SMTP server is down")


def test_without_a_destination_nothing_is_checked_nor_remembered(settings):
    settings.ADMINS = []
    settings.FAILED_JOBS_ALERT_WEBHOOK_URL = ""
    failed_job("sms")

    assert alerts.check_and_send() == []
    assert not Alert.objects.exists()

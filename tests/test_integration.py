"""The whole pipeline on real parts: Redis, PostgreSQL, a Dramatiq worker, SMTP and the Twilio SDK."""

import pytest

from notifications.models import Delivery, InAppNotification
from notifications.services import NotificationsService
from tests.helpers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def service():
    return NotificationsService()


def delivery_status(delivery):
    delivery.refresh_from_db()
    return delivery.status


def test_email_reaches_the_smtp_server_with_both_parts(service, worker, fake_smtp):
    delivery = service.send_verification_email(
        "ada@example.com", verification_url="https://app/v/9", name="Ada"
    )

    [message] = fake_smtp.wait_for_messages(1)
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Confirm your email address"
    assert "https://app/v/9" in message.get_body(("plain",)).get_content()
    assert '<a href="https://app/v/9">' in message.get_body(("html",)).get_content()
    wait_until(lambda: delivery_status(delivery) == Delivery.Status.SENT, message="delivery marked sent")
    assert delivery.provider_message_id == message["Message-ID"]


def test_sms_reaches_twilio_through_the_sdk(service, worker, fake_twilio):
    delivery = service.send_sms("+33 6 12 34 56 78", text="Votre code : 1234")

    [sms] = fake_twilio.wait_for_messages(1)
    assert (sms["to"], sms["from"], sms["body"]) == ("+33612345678", "+15005550006", "Votre code : 1234")
    assert sms["auth_ok"]
    wait_until(lambda: delivery_status(delivery) == Delivery.Status.SENT, message="delivery marked sent")
    assert delivery.provider_message_id == sms["sid"]


def test_whatsapp_uses_whatsapp_addresses(service, worker, fake_twilio):
    service.send_whatsapp("+33612345678", text="Hello")
    [message] = fake_twilio.wait_for_messages(1)
    assert message["to"] == "whatsapp:+33612345678"
    assert message["from"] == "whatsapp:+14155238886"


def test_appointment_reminder_by_sms(service, worker, fake_twilio):
    from datetime import UTC, datetime

    appointment = {"id": 3, "starts_at": datetime(2026, 12, 1, 9, 30, tzinfo=UTC), "with_name": "Dr Martin"}
    service.send_appointment_reminder(
        "+33612345678", appointment=appointment, lead="hour_before", language="en"
    )
    [message] = fake_twilio.wait_for_messages(1)
    assert message["body"].startswith("Reminder: your appointment with Dr Martin is in one hour")


def test_inapp_row_appears(service, worker, django_user_model):
    user = django_user_model.objects.create(username="ada")
    service.create_inapp_notification(user, title="Report ready", link="/reports/1")
    notification = wait_until(lambda: InAppNotification.objects.filter(recipient=user).first(), message="row")
    assert notification.title == "Report ready"


def test_rundramatiq_worker_process_delivers_every_channel(
    service, worker_process, fake_smtp, fake_twilio, django_user_model
):
    user = django_user_model.objects.create(username="ada")
    worker_process()
    service.send_email("ada@example.com", subject="Process", text="From a worker process")
    service.send_sms("+33612345678", text="sms")
    service.send_whatsapp("+33612345678", text="wa")
    service.create_inapp_notification(user, title="in-app")

    assert fake_smtp.wait_for_messages(1, timeout=30)[0]["Subject"] == "Process"
    bodies = sorted(m["body"] for m in fake_twilio.wait_for_messages(2, timeout=30))
    assert bodies == ["sms", "wa"]
    wait_until(
        lambda: InAppNotification.objects.filter(recipient=user).exists(), timeout=30, message="in-app row"
    )
    wait_until(lambda: Delivery.objects.filter(status=Delivery.Status.SENT).count() == 4, message="4 sent")


def test_a_worker_process_files_tracebacks_without_position_markers(service, worker_process, fake_twilio):
    from failedjobs.models import FailedJob

    fake_twilio.fail_always(400, 21211, "Invalid 'To' number")
    worker_process()
    service.send_sms("+33612345678", text="refused")

    job = wait_until(FailedJob.objects.first, timeout=30, message="the failed job")
    assert "Traceback (most recent call last)" in job.traceback
    assert "res = actor(*message.args, **message.kwargs)" in job.traceback
    lines = [line.strip() for line in job.traceback.splitlines()]
    assert [line for line in lines if line and set(line) <= {"^", "~"}] == []


def test_same_idempotency_key_twice_sends_once(service, worker, fake_twilio):
    first = service.send_sms("+33612345678", text="once", idempotency_key="signup-42")
    second = service.send_sms("+33612345678", text="once", idempotency_key="signup-42")
    fake_twilio.wait_for_messages(1)
    wait_until(lambda: delivery_status(first) == Delivery.Status.SENT, message="sent")
    worker.join()
    assert second.pk == first.pk
    assert fake_twilio.requests_seen == 1


def test_rate_limited_sms_waits_for_retry_after_then_succeeds(service, worker, fake_twilio):
    fake_twilio.fail_next(429, 20429, "Too many requests", retry_after=1)
    delivery = service.send_sms("+33612345678", text="later")
    fake_twilio.wait_for_messages(1, timeout=15)
    wait_until(lambda: delivery_status(delivery) == Delivery.Status.SENT, message="sent")
    assert delivery.attempts == 2
    assert fake_twilio.requests_seen == 2


@pytest.mark.postgresql  # callers with one dedup key take turns on an advisory lock
def test_concurrent_calls_with_one_dedup_key_send_once(service, worker, fake_smtp):
    """Eight callers at once (as when a sign-up form is submitted twice): one email, one Delivery."""
    import threading

    from django.db import connection

    callers = 8
    start = threading.Barrier(callers)
    returned = []

    def call():
        start.wait()
        try:
            returned.append(service.send_abandon_recovery("ada@example.com", resume_url="https://app/r/1"))
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len({delivery.pk for delivery in returned}) == 1
    assert Delivery.objects.filter(template="abandon_recovery").count() == 1
    fake_smtp.wait_for_messages(1)
    worker.join()
    assert len(fake_smtp.messages) == 1

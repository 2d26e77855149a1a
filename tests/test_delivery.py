"""Channels end to end on an in-memory broker and worker: content, languages, the delivery log."""

from datetime import UTC, datetime

import pytest
from django.core import mail

from notifications.models import Delivery, InAppNotification
from notifications.services import NotificationsService

pytestmark = pytest.mark.django_db(transaction=True)

APPOINTMENT = {"id": 7, "starts_at": datetime(2026, 12, 1, 9, 30, tzinfo=UTC), "location": "Salle 2"}


@pytest.fixture
def service():
    return NotificationsService()


def drain(broker, worker):
    for queue in ("email", "sms", "whatsapp", "in_app"):
        broker.join(queue, fail_fast=True)
    worker.join()


def test_verification_email_has_text_and_html_parts(service, stub_broker, stub_worker):
    delivery = service.send_verification_email(
        "ada@example.com", verification_url="https://app/v/1", name="Ada"
    )
    drain(stub_broker, stub_worker)

    [sent] = mail.outbox
    assert sent.to == ["ada@example.com"]
    assert sent.subject == "Confirm your email address"
    assert "Hello Ada," in sent.body and "https://app/v/1" in sent.body
    html, mimetype = sent.alternatives[0]
    assert mimetype == "text/html"
    assert '<a href="https://app/v/1">' in html
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENT
    assert delivery.attempts == 1
    assert delivery.provider_message_id == sent.extra_headers["Message-ID"]


def test_email_in_french(service, stub_broker, stub_worker):
    service.send_verification_email("ada@example.com", verification_url="https://app/v/1", language="fr")
    drain(stub_broker, stub_worker)
    assert mail.outbox[0].subject == "Confirmez votre adresse e-mail"
    assert "Bonjour," in mail.outbox[0].body


def test_active_language_is_used_when_none_is_given(service, stub_broker, stub_worker):
    from django.utils import translation

    with translation.override("fr"):
        service.send_abandon_recovery("ada@example.com", resume_url="https://app/resume")
    drain(stub_broker, stub_worker)
    assert mail.outbox[0].subject == "Terminez la création de votre compte"


def test_text_parts_are_not_html_escaped_but_html_part_is(service, stub_broker, stub_worker):
    service.send_invitation_email(
        "ada@example.com", invite_url="https://app/i?a=1&b=2", inviter_name="Tom & Jerry"
    )
    drain(stub_broker, stub_worker)
    sent = mail.outbox[0]
    assert sent.subject == "Tom & Jerry invited you"
    assert "https://app/i?a=1&b=2" in sent.body
    assert "Tom &amp; Jerry" in sent.alternatives[0][0]


def test_appointment_confirmation_shows_the_local_time(service, stub_broker, stub_worker, settings):
    settings.TIME_ZONE = "Europe/Paris"
    service.send_appointment_confirmation("ada@example.com", appointment=APPOINTMENT, language="fr")
    drain(stub_broker, stub_worker)
    assert "mardi 1 décembre 2026, 10:30" in mail.outbox[0].body
    assert "Lieu : Salle 2" in mail.outbox[0].body


def test_inapp_notification_row_is_created(service, stub_broker, stub_worker, django_user_model):
    user = django_user_model.objects.create(username="ada")
    delivery = service.create_inapp_notification(user, title="Welcome", body="Hello", link="/start")
    drain(stub_broker, stub_worker)

    notification = InAppNotification.objects.get(recipient=user)
    assert (notification.title, notification.body, notification.link) == ("Welcome", "Hello", "/start")
    assert notification.read_at is None
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENT
    assert notification.delivery_id == delivery.pk


def test_redelivered_message_of_a_sent_email_does_not_send_again(service, stub_broker, stub_worker):
    service.send_email("ada@example.com", subject="Hi", text="Once")
    drain(stub_broker, stub_worker)
    delivery = Delivery.objects.get()
    from notifications.tasks import ACTORS

    ACTORS["email"].send(
        delivery_id=delivery.pk,
        channel="email",
        recipient="ada@example.com",
        template="plain",
        context={"subject": "Hi", "text": "Once", "html": ""},
        language="en",
    )
    drain(stub_broker, stub_worker)
    assert len(mail.outbox) == 1
    delivery.refresh_from_db()
    assert delivery.attempts == 1


def test_queue_disabled_delivers_synchronously(service, settings, django_user_model):
    settings.QUEUE_ENABLED = False
    user = django_user_model.objects.create(username="ada")
    service.create_inapp_notification(user, title="Now")
    service.send_email("ada@example.com", subject="Hi", text="Now")
    assert InAppNotification.objects.filter(recipient=user, title="Now").exists()
    assert [m.subject for m in mail.outbox] == ["Hi"]
    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.Status.SENT}


def test_queue_disabled_waits_for_the_transaction_to_commit(service, settings):
    from django.db import transaction

    settings.QUEUE_ENABLED = False
    with transaction.atomic():
        service.send_email("ada@example.com", subject="Hi", text="Later")
        assert mail.outbox == []
    assert len(mail.outbox) == 1


def test_redis_unreachable_falls_back_to_synchronous_delivery(service, caplog, unreachable_redis):
    delivery = service.send_email("ada@example.com", subject="Hi", text="Fallback")

    assert [m.subject for m in mail.outbox] == ["Hi"]
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENT
    assert "The broker is unreachable" in caplog.text
    assert len(unreachable_redis.enqueue_attempts) == 1


def test_after_redis_failed_callers_skip_it_for_a_while(service, unreachable_redis):
    for number in range(3):
        service.send_email("ada@example.com", subject=f"Hi {number}", text="Fallback")

    assert len(mail.outbox) == 3
    assert len(unreachable_redis.enqueue_attempts) == 1


def test_redelivered_inapp_message_creates_no_second_row(
    service, stub_broker, stub_worker, django_user_model
):
    from notifications.tasks import ACTORS

    user = django_user_model.objects.create(username="ada")
    delivery = service.create_inapp_notification(user, title="Once")
    drain(stub_broker, stub_worker)
    ACTORS["in_app"].send(
        delivery_id=delivery.pk,
        channel="in_app",
        recipient=str(user.pk),
        template="in_app",
        context={"title": "Once", "body": "", "link": ""},
        language="en",
    )
    drain(stub_broker, stub_worker)
    assert InAppNotification.objects.filter(recipient=user).count() == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Delivery.Status.SENT, 1)


@pytest.mark.usefixtures("transactional_db")
def test_inapp_notification_for_a_deleted_user_fails_for_good(service, stub_broker, django_user_model):
    import dramatiq

    from failedjobs.models import FailedJob

    user = django_user_model.objects.create(username="ada")
    delivery = service.create_inapp_notification(user, title="Too late")
    user.delete()  # before any worker runs: the notification row does not exist yet
    worker = dramatiq.Worker(stub_broker, worker_timeout=50, worker_threads=1)
    worker.start()
    try:
        stub_broker.join("in_app", fail_fast=False)
        worker.join()
    finally:
        worker.stop()
    job = FailedJob.objects.get()
    assert job.exception_class == "notifications.exceptions.PermanentDeliveryError"
    assert job.attempts == 1
    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.FAILED


def test_reused_idempotency_key_inside_a_transaction_leaves_it_usable(service, settings):
    from django.db import transaction

    settings.QUEUE_ENABLED = False
    with transaction.atomic():
        first = service.send_email("ada@example.com", subject="Hi", text="x", idempotency_key="k1")
        second = service.send_email("ada@example.com", subject="Hi", text="x", idempotency_key="k1")
        assert Delivery.objects.count() == 1
    assert first.pk == second.pk
    assert len(mail.outbox) == 1

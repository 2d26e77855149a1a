from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model

from notifications.exceptions import (
    ChannelNotConfigured,
    InvalidNotification,
    InvalidPayload,
    InvalidRecipient,
    UnknownTemplate,
)
from notifications.models import Delivery
from notifications.services import NotificationsService

pytestmark = pytest.mark.django_db

APPOINTMENT = {
    "id": 42,
    "starts_at": datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
    "location": "12 rue de la Paix, Paris",
    "with_name": "Dr Martin",
}


@pytest.fixture
def service():
    return NotificationsService()


@pytest.fixture
def enqueued(stub_broker, django_capture_on_commit_callbacks):
    """Run the service inside a transaction and return what reached each queue once it committed."""

    def run(call):
        with django_capture_on_commit_callbacks(execute=True):
            result = call()
        return result, {
            name: stub_broker.queues[name].qsize() for name in ("email", "sms", "whatsapp", "in_app")
        }

    return run


def test_verification_email_is_enqueued_on_the_email_queue(service, enqueued):
    delivery, sizes = enqueued(
        lambda: service.send_verification_email("ada@example.com", verification_url="https://x/v")
    )
    assert sizes == {"email": 1, "sms": 0, "whatsapp": 0, "in_app": 0}
    assert delivery.status == Delivery.Status.QUEUED
    assert delivery.recipient == "ada@example.com"
    assert delivery.template == "verification"


def test_message_carries_the_payload_and_the_delivery_id(
    service, stub_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        delivery = service.send_sms("+33 6 12 34 56 78", text="Bonjour")
    message = stub_broker.queues["sms"].get_nowait()
    from dramatiq import Message

    decoded = Message.decode(message)
    assert decoded.actor_name == "deliver_sms"
    assert decoded.message_id == delivery.message_id
    assert decoded.kwargs["recipient"] == "+33612345678"
    assert decoded.kwargs["delivery_id"] == delivery.pk
    assert decoded.kwargs["context"] == {"text": "Bonjour"}


def test_nothing_is_enqueued_before_the_transaction_commits(
    service, stub_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        service.send_sms("+33612345678", text="Bonjour")
        assert stub_broker.queues["sms"].qsize() == 0
    assert len(callbacks) == 1


@pytest.mark.parametrize("address", ["", "not-an-email", "a@b", "ada@example.com\nBcc: x@y.z", None])
def test_invalid_email_address_raises_and_records_nothing(service, address):
    with pytest.raises(InvalidRecipient):
        service.send_verification_email(address, verification_url="https://x/v")
    assert Delivery.objects.count() == 0


@pytest.mark.parametrize("number", ["", "0612345678", "+1 555", "+33 6 12", "call me", None])
def test_invalid_phone_number_raises(service, number):
    with pytest.raises(InvalidRecipient, match="international form"):
        service.send_sms(number, text="hi")
    assert Delivery.objects.count() == 0


def test_unknown_template_raises(service):
    with pytest.raises(UnknownTemplate, match="no_such_template"):
        service.notify("email", "ada@example.com", "no_such_template", {})


def test_template_name_cannot_walk_out_of_the_template_folder(service):
    with pytest.raises(UnknownTemplate):
        service.notify("sms", "+33612345678", "../../admin/base", {})


def test_context_that_is_not_json_raises(service):
    with pytest.raises(InvalidPayload, match="serialised"):
        service.notify("email", "ada@example.com", "verification", {"verification_url": object()})
    assert Delivery.objects.count() == 0


def test_oversized_context_raises(service, settings):
    settings.NOTIFICATIONS_MAX_PAYLOAD_BYTES = 1000
    with pytest.raises(InvalidPayload, match="limit is 1000"):
        service.send_email("ada@example.com", subject="Hi", text="x" * 2000)


def test_unsupported_language_raises(service):
    with pytest.raises(InvalidNotification, match="Unsupported language 'de'"):
        service.send_verification_email("ada@example.com", verification_url="https://x", language="de")


def test_missing_twilio_setting_is_named(service, settings):
    settings.TWILIO_SMS_FROM = ""
    with pytest.raises(ChannelNotConfigured, match="TWILIO_SMS_FROM"):
        service.send_sms("+33612345678", text="hi")


def test_same_idempotency_key_twice_enqueues_once(service, enqueued):
    first, _ = enqueued(lambda: service.send_sms("+33612345678", text="hi", idempotency_key="order-1"))
    second, sizes = enqueued(lambda: service.send_sms("+33612345678", text="hi", idempotency_key="order-1"))
    assert first.pk == second.pk
    assert sizes["sms"] == 1


def test_calls_without_an_idempotency_key_are_all_sent(service, enqueued):
    first, _ = enqueued(lambda: service.send_sms("+33612345678", text="hi"))
    second, sizes = enqueued(lambda: service.send_sms("+33612345678", text="hi"))
    assert first.pk != second.pk
    assert sizes["sms"] == 2
    assert first.idempotency_key == second.idempotency_key == ""


def test_empty_idempotency_key_is_refused(service):
    with pytest.raises(InvalidNotification, match="idempotency_key must not be empty"):
        service.send_sms("+33612345678", text="hi", idempotency_key="")
    assert not Delivery.objects.exists()


def test_dedup_key_within_window_enqueues_once(service, enqueued):
    def call():
        return service.send_sms("+33612345678", text="hi", dedup_key="k", dedup_window=timedelta(minutes=5))

    first, _ = enqueued(call)
    second, sizes = enqueued(call)
    assert first.pk == second.pk
    assert sizes["sms"] == 1


def test_dedup_key_after_the_window_enqueues_again(service, enqueued):
    first, _ = enqueued(
        lambda: service.send_sms("+33612345678", text="hi", dedup_key="k", dedup_window=timedelta(minutes=5))
    )
    Delivery.objects.filter(pk=first.pk).update(created_at=first.created_at - timedelta(minutes=6))
    second, sizes = enqueued(
        lambda: service.send_sms("+33612345678", text="hi", dedup_key="k", dedup_window=timedelta(minutes=5))
    )
    assert second.pk != first.pk
    assert sizes["sms"] == 2


def test_reminder_for_the_same_appointment_and_lead_is_sent_once(service, enqueued):
    def remind(lead):
        return service.send_appointment_reminder("+33612345678", appointment=APPOINTMENT, lead=lead)

    enqueued(lambda: remind("day_before"))
    enqueued(lambda: remind("day_before"))
    _, sizes = enqueued(lambda: remind("hour_before"))
    assert sizes["sms"] == 2


def test_reminder_lead_must_be_known(service):
    with pytest.raises(InvalidNotification, match="day_before"):
        service.send_appointment_reminder("+33612345678", appointment=APPOINTMENT, lead="week_before")


def test_appointment_needs_an_aware_start(service):
    naive = {**APPOINTMENT, "starts_at": datetime(2026, 12, 1, 9, 30)}
    with pytest.raises(InvalidNotification, match="timezone-aware"):
        service.send_appointment_confirmation("ada@example.com", appointment=naive)


def test_inapp_notification_needs_a_saved_user(service):
    with pytest.raises(InvalidRecipient, match="saved"):
        service.create_inapp_notification(get_user_model()(username="x"), title="Hi")


def test_inapp_notification_needs_a_title(service, django_user_model):
    user = django_user_model.objects.create(username="ada")
    with pytest.raises(InvalidNotification, match="title"):
        service.create_inapp_notification(user, title="")


@pytest.mark.parametrize(("text", "error"), [("", "must not be empty"), ("x" * 1601, "at most 1600")])
def test_text_message_length_is_checked_at_call_time(service, text, error):
    with pytest.raises(InvalidNotification, match=error):
        service.send_sms("+33612345678", text=text)
    with pytest.raises(InvalidNotification, match=error):
        service.send_whatsapp("+33612345678", text=text)

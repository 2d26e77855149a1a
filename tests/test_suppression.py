"""The suppression list: STOP and START by Twilio's signed inbound webhook, 21610, the admin, and
what a notification to a suppressed recipient becomes."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from twilio.request_validator import RequestValidator

from failedjobs.models import FailedJob
from notifications import outbox, suppression
from notifications.models import Delivery, Suppression
from notifications.services import NotificationsService

pytestmark = pytest.mark.django_db(transaction=True)

Status = Delivery.Status
NUMBER = "+33612345678"
TOKEN = "test-auth-token"


@pytest.fixture
def service():
    return NotificationsService()


@pytest.fixture
def synchronous(settings):
    settings.QUEUE_ENABLED = False


def inbound(client, body, sender=NUMBER, *, token=TOKEN):
    """POST an inbound message as Twilio does, signed over the URL the test client calls."""
    url = "http://testserver" + reverse("twilio_inbound")
    parameters = {"From": sender, "To": "+15005550006", "Body": body, "MessageSid": "SM" + "1" * 32}
    signature = RequestValidator(token).compute_signature(url, parameters) if token else ""
    return client.post(url, parameters, headers={"X-Twilio-Signature": signature})


def test_stop_suppresses_and_later_sends_are_recorded_suppressed_not_sent(
    client, service, fake_twilio, synchronous
):
    response = inbound(client, " stop ")

    assert response.status_code == 200 and b"<Response>" in response.content
    entry = Suppression.objects.get()
    assert (entry.channel, entry.recipient, entry.reason) == ("sms", NUMBER, Suppression.Reason.STOP)
    delivery = service.send_sms(NUMBER, text="Your appointment is tomorrow")
    assert delivery.status == Status.SUPPRESSED
    assert "Replied STOP" in delivery.last_error
    assert fake_twilio.requests_seen == 0
    assert service.send_whatsapp(NUMBER, text="hi").status == Status.SENT, "STOP on SMS is for SMS"


def test_start_lifts_a_stop(client, service, fake_twilio, synchronous):
    inbound(client, "STOP")
    inbound(client, "Start")

    assert not Suppression.objects.exists()
    assert service.send_sms(NUMBER, text="hi").status == Status.SENT
    assert len(fake_twilio.messages) == 1


def test_start_does_not_lift_an_operators_suppression(client):
    suppression.suppress("sms", NUMBER, Suppression.Reason.MANUAL, "asked by phone")

    inbound(client, "START")

    assert Suppression.objects.get().reason == Suppression.Reason.MANUAL


def test_whatsapp_stop_suppresses_whatsapp(client, service, synchronous):
    inbound(client, "STOP", sender=f"whatsapp:{NUMBER}")

    assert Suppression.objects.get().channel == "whatsapp"


@pytest.mark.parametrize("token", ["", "wrong-token"], ids=["unsigned", "forged"])
def test_an_unsigned_or_forged_stop_is_refused(client, token):
    assert inbound(client, "STOP", token=token).status_code == 403
    assert not Suppression.objects.exists()


def test_other_inbound_messages_change_nothing(client):
    assert inbound(client, "Stop sending me reminders on Sunday please").status_code == 200
    assert not Suppression.objects.exists()


def test_a_reminder_scheduled_before_a_stop_is_suppressed_when_due(client, service, fake_twilio, synchronous):
    starts_at = timezone.now() + timedelta(days=2)
    reminder = service.send_appointment_reminder(
        NUMBER, appointment={"id": 7, "starts_at": starts_at}, lead="day_before", delay=timedelta(hours=1)
    )
    inbound(client, "STOP")
    Delivery.objects.filter(pk=reminder.pk).update(send_at=timezone.now())

    outbox.dispatch_due()

    reminder.refresh_from_db()
    assert reminder.status == Status.SUPPRESSED and "STOP" in reminder.last_error
    assert fake_twilio.requests_seen == 0 and not FailedJob.objects.exists()


def test_twilio_refusing_with_21610_suppresses_the_number(service, fake_twilio, synchronous):
    fake_twilio.fail_next(400, 21610, "Attempt to send to unsubscribed recipient")

    first = service.send_sms(NUMBER, text="hi")

    assert first.status == Status.FAILED and first.error_code == "21610"
    assert Suppression.objects.get().reason == Suppression.Reason.STOP
    assert service.send_sms(NUMBER, text="again").status == Status.SUPPRESSED
    assert fake_twilio.requests_seen == 1


def test_the_verification_email_bypasses_a_complaint_but_not_a_hard_bounce(service, synchronous, mailoutbox):
    suppression.suppress("email", "Ada@Example.com", Suppression.Reason.COMPLAINT)

    verification = service.send_verification_email("ada@example.com", verification_url="https://x/v")
    invitation = service.send_invitation_email(
        "ada@example.com", invite_url="https://x/i", inviter_name="Bob"
    )
    assert (verification.status, invitation.status) == (Status.SENT, Status.SUPPRESSED)

    suppression.suppress("email", "ada@example.com", Suppression.Reason.HARD_BOUNCE)
    assert Suppression.objects.get().reason == Suppression.Reason.HARD_BOUNCE, "the stronger reason wins"
    again = service.send_verification_email("ada@example.com", verification_url="https://x/v")
    assert again.status == Status.SUPPRESSED and "Hard bounce" in again.last_error
    assert len(mailoutbox) == 1


def test_an_operator_suppresses_in_the_admin_and_the_delivery_shows_why(admin_client, service, synchronous):
    response = admin_client.post(
        reverse("admin:notifications_suppression_add"),
        {"channel": "sms", "recipient": "+33 6 12 34 56 78", "reason": "manual", "detail": "asked by phone"},
    )
    assert response.status_code == 302
    assert Suppression.objects.get().recipient == NUMBER  # cleaned to E.164

    delivery = service.send_sms(NUMBER, text="hi")
    page = admin_client.get(reverse("admin:notifications_delivery_change", args=[delivery.pk]))
    assert delivery.status == Status.SUPPRESSED
    assert b"Suppressed: Added by an operator" in page.content


def test_the_admin_refuses_a_recipient_that_is_not_a_number(admin_client):
    response = admin_client.post(
        reverse("admin:notifications_suppression_add"),
        {"channel": "sms", "recipient": "not a number", "reason": "manual"},
    )
    assert response.status_code == 200 and b"not a valid phone number" in response.content
    assert not Suppression.objects.exists()

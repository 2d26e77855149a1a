"""The email provider's side: its message id recorded, its tracking events (anymail's ``tracking``
signal, and one ESP's real webhook through anymail.urls), and anymail's exceptions mapped."""

import base64
import io

import pytest
from anymail.backends.test import EmailBackend as AnymailTestBackend
from anymail.exceptions import AnymailAPIError
from anymail.signals import AnymailTrackingEvent, tracking
from django.core import mail
from requests import Response

from failedjobs.models import FailedJob
from notifications.models import Delivery, Suppression
from notifications.services import NotificationsService

pytestmark = pytest.mark.django_db(transaction=True)

Status = Delivery.Status
ADA = "ada@example.com"


@pytest.fixture
def service(settings):
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    settings.QUEUE_ENABLED = False
    mail.outbox = []
    return NotificationsService()


def send_verification(service):
    return service.send_verification_email(ADA, verification_url="https://example.com/v/1", name="Ada")


def report(event_type, delivery=None, *, message_id=None, recipient=ADA, metadata=None, **fields):
    """Send anymail's tracking signal as its webhook views do."""
    if delivery is not None:
        message_id = message_id or delivery.provider_message_id
    event = AnymailTrackingEvent(
        event_type=event_type, message_id=message_id, recipient=recipient, metadata=metadata or {}, **fields
    )
    tracking.send(sender=object, event=event, esp_name="Test")


def test_the_esps_message_id_and_the_delivery_id_travel_with_the_email(service):
    delivery = send_verification(service)

    [message] = mail.outbox
    assert delivery.status == Status.SENT
    assert delivery.provider_message_id == str(message.anymail_status.message_id)
    assert message.anymail_test_params["metadata"] == {"delivery_id": str(delivery.pk)}


def test_delivered_then_a_late_duplicate_changes_nothing(service):
    delivery = send_verification(service)

    report("delivered", delivery)
    delivery.refresh_from_db()
    first = delivery.receipt_at
    report("delivered", delivery)
    report("deferred", delivery)
    report("opened", delivery)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.receipt_at) == (Status.DELIVERED, first)


def test_a_bounce_is_undelivered_a_failed_job_and_suppresses_the_address(service):
    delivery = send_verification(service)

    report("bounced", delivery, reject_reason="bounced", mta_response="550 5.1.1 No such user")

    delivery.refresh_from_db()
    assert delivery.status == Status.UNDELIVERED and "550 5.1.1" in delivery.last_error
    assert FailedJob.objects.get().kwargs["delivery_id"] == delivery.pk
    entry = Suppression.objects.get()
    assert (entry.channel, entry.recipient, entry.reason) == ("email", ADA, Suppression.Reason.HARD_BOUNCE)
    assert send_verification(service).status == Status.SUPPRESSED


def test_a_complaint_suppresses_all_but_the_verification_email(service):
    delivery = send_verification(service)
    report("delivered", delivery)

    report("complained", delivery, metadata={"delivery_id": str(delivery.pk)})

    assert Delivery.objects.get(pk=delivery.pk).status == Status.DELIVERED
    assert Suppression.objects.get().reason == Suppression.Reason.COMPLAINT
    invitation = service.send_invitation_email(ADA, invite_url="https://x/i", inviter_name="Bob")
    assert invitation.status == Status.SUPPRESSED
    assert send_verification(service).status == Status.SENT


def test_an_unsubscribe_at_the_esp_suppresses(service):
    report("unsubscribed", recipient="Ada@Example.com")

    assert Suppression.objects.get().reason == Suppression.Reason.UNSUBSCRIBED
    abandon = service.send_abandon_recovery(ADA, resume_url="https://x/r")
    assert abandon.status == Status.SUPPRESSED


def test_a_failed_event_is_retried(service):
    delivery = send_verification(service)

    report("failed", delivery, metadata={"delivery_id": delivery.pk})

    assert Delivery.objects.get(pk=delivery.pk).status == Status.SCHEDULED
    assert not FailedJob.objects.exists()


def test_an_event_about_an_unknown_message_changes_nothing(service):
    delivery = send_verification(service)

    report("bounced", message_id="not-ours", recipient="someone@example.com")

    assert Delivery.objects.get(pk=delivery.pk).status == Status.SENT
    assert not FailedJob.objects.exists()


def test_an_esp_webhook_through_anymail_urls_reaches_the_delivery(service, client, settings):
    """Postmark's bounce webhook, authenticated with ANYMAIL's WEBHOOK_SECRET, as anymail documents."""
    settings.ANYMAIL = {"WEBHOOK_SECRET": "hook:secret"}
    delivery = send_verification(service)
    bounce = {
        "RecordType": "Bounce",
        "Type": "HardBounce",
        "MessageID": delivery.provider_message_id,
        "Email": ADA,
        "Details": "smtp;550 5.1.1 The email account does not exist",
        "BouncedAt": "2026-12-03T12:00:00Z",
        "Metadata": {"delivery_id": str(delivery.pk)},
    }
    credentials = "Basic " + base64.b64encode(b"hook:secret").decode()

    refused = client.post("/anymail/postmark/tracking/", bounce, content_type="application/json")
    assert refused.status_code == 400 and Delivery.objects.get(pk=delivery.pk).status == Status.SENT
    response = client.post(
        "/anymail/postmark/tracking/", bounce, content_type="application/json", HTTP_AUTHORIZATION=credentials
    )

    assert response.status_code == 200
    assert Delivery.objects.get(pk=delivery.pk).status == Status.UNDELIVERED
    assert Suppression.objects.get().reason == Suppression.Reason.HARD_BOUNCE


def esp_answer(status):
    """The ESP's HTTP answer that anymail keeps on its AnymailAPIError."""
    response = Response()
    response.status_code, response.reason = status, "Refused"
    response.raw = io.BytesIO(b'{"message": "no"}')
    return response


def api_error(status):
    return AnymailAPIError("The ESP refused", status_code=status, response=esp_answer(status))


def test_a_refused_recipient_fails_at_once_without_retries(service, settings):
    """The ESP's own answer, through the test backend: no retry can change it."""
    settings.EMAIL_BACKEND = f"{__name__}.RefusingBackend"

    delivery = send_verification(service)

    assert delivery.status == Status.FAILED
    job = FailedJob.objects.get()
    assert job.attempts == 1 and job.exception_class == "notifications.exceptions.PermanentDeliveryError"


class RefusingBackend(AnymailTestBackend):
    """Anymail's test backend, with the ESP answering 422 (an address it will never accept)."""

    def post_to_esp(self, payload, message):
        raise api_error(422)

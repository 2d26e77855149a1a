"""With the queue off: the call shows how the delivery ended, transient failures are retried later by
the dispatcher, and a caller never waits on a provider longer than NOTIFICATIONS_SYNC_TIMEOUT_S."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from failedjobs.models import FailedJob
from notifications import outbox
from notifications.models import Delivery
from notifications.services import NotificationsService

pytestmark = pytest.mark.django_db(transaction=True)

ADA = "+33612345678"


@pytest.fixture
def service(settings):
    settings.QUEUE_ENABLED = False
    settings.NOTIFICATIONS_MIN_BACKOFF_MS = 200
    settings.NOTIFICATIONS_MAX_BACKOFF_MS = 400
    return NotificationsService()


def test_the_returned_delivery_shows_how_it_ended(service, fake_twilio):
    fake_twilio.fail_next(400, 21211)

    refused = service.send_sms(ADA, text="refused")
    sent = service.send_sms(ADA, text="sent")

    assert refused.status == Delivery.Status.FAILED and refused.error_code == "21211"
    assert sent.status == Delivery.Status.SENT and sent.provider_message_id.startswith("SM")


def test_a_provider_answering_500_then_200_delivers_on_a_retry_with_no_failed_job(service, fake_twilio):
    fake_twilio.fail_next(500, 20500)

    delivery = service.send_sms(ADA, text="second time lucky")

    assert delivery.status == Delivery.Status.SCHEDULED
    assert timezone.now() < delivery.send_at < timezone.now() + timedelta(seconds=1)
    assert not FailedJob.objects.exists()
    time.sleep(0.9)
    assert outbox.dispatch_due().due == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Delivery.Status.SENT, 2)
    assert len(fake_twilio.messages) == 1 and not FailedJob.objects.exists()


def test_retries_spent_end_in_a_failed_job(service, fake_twilio, settings):
    settings.NOTIFICATIONS_MAX_RETRIES = 1
    fake_twilio.fail_always(503, 20503)

    delivery = service.send_sms(ADA, text="never")
    time.sleep(0.9)
    outbox.dispatch_due()

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Delivery.Status.FAILED, 2)
    assert FailedJob.objects.get().kwargs["delivery_id"] == delivery.pk


def test_a_caller_waits_no_longer_than_the_synchronous_bound(service, fake_twilio, settings):
    settings.TWILIO_TIMEOUT = 15
    settings.NOTIFICATIONS_SYNC_TIMEOUT_S = 0.5
    fake_twilio.delay_next(2)

    started = time.monotonic()
    delivery = service.send_sms(ADA, text="slow provider")
    waited = time.monotonic() - started

    assert waited < 1.5, f"the caller waited {waited:.1f} s"
    assert delivery.status == Delivery.Status.SCHEDULED
    assert delivery.error_code == "no-answer"
    # Twilio took it all the same, late: the retry will find it instead of sending it again.
    fake_twilio.wait_for_messages(1, timeout=5)

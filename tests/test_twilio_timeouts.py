"""Twilio answering too late: the next attempt asks Twilio before sending again."""

import time
from collections import Counter
from datetime import UTC, datetime

import pytest

from failedjobs.models import FailedJob
from notifications.models import Delivery
from notifications.services import NotificationsService
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

RECIPIENTS = [f"+336123456{number:02d}" for number in range(6)]
VISIT = {"id": 7, "starts_at": datetime(2030, 5, 6, 9, 30, tzinfo=UTC), "location": "Lyon", "with_name": "Ro"}


@pytest.fixture
def slow_twilio(settings, fake_twilio):
    settings.TWILIO_TIMEOUT = 0.5
    settings.TWILIO_LOOKUP_DELAY_MS = 2_000  # past the fake's late answers below
    return fake_twilio


def all_sent(deliveries):
    pks = [delivery.pk for delivery in deliveries]
    return Delivery.objects.filter(pk__in=pks, status=Delivery.Status.SENT).count() == len(pks)


def test_a_message_twilio_accepted_too_slowly_is_found_not_sent_again(worker, slow_twilio):
    slow_twilio.delay_next(1.5, times=len(RECIPIENTS))  # each accepted, each answered too late

    deliveries = [NotificationsService().send_sms(number, text="exactly once") for number in RECIPIENTS]

    wait_until(lambda: all_sent(deliveries), timeout=30, message="every SMS marked sent")
    assert slow_twilio.requests_seen == len(RECIPIENTS)
    assert Counter(message["to"] for message in slow_twilio.messages) == Counter(RECIPIENTS)
    sids = {message["to"]: message["sid"] for message in slow_twilio.messages}
    for delivery in Delivery.objects.filter(pk__in=[d.pk for d in deliveries]):
        assert delivery.provider_message_id == sids[delivery.recipient]
    assert slow_twilio.lookups_seen >= len(RECIPIENTS)


def test_a_message_twilio_refused_too_slowly_is_sent_again(worker, slow_twilio):
    slow_twilio.delay_next(1.5)
    slow_twilio.fail_next(500, 20500)  # answered after the timeout, and not accepted

    delivery = NotificationsService().send_sms(RECIPIENTS[0], text="second try")

    wait_until(lambda: all_sent([delivery]), timeout=30, message="the SMS marked sent")
    assert slow_twilio.requests_seen == 2
    assert [message["to"] for message in slow_twilio.messages] == [RECIPIENTS[0]]
    assert slow_twilio.lookups_seen == 1


def test_answers_in_time_cost_no_lookup(worker, fake_twilio):
    delivery = NotificationsService().send_sms(RECIPIENTS[0], text="hi")

    wait_until(lambda: all_sent([delivery]), timeout=15, message="the SMS marked sent")
    assert fake_twilio.lookups_seen == 0


def whatsapp_confirmation():
    """A business-initiated WhatsApp message: a Content template, whose text Twilio renders."""
    return NotificationsService().send_appointment_confirmation(
        RECIPIENTS[0], appointment=VISIT, channel="whatsapp"
    )


def test_a_template_message_twilio_accepted_too_slowly_is_not_sent_twice(worker, slow_twilio):
    """Its text cannot be looked up: with no receipt to tell, it goes to an operator, not out again."""
    slow_twilio.delay_next(1.5)

    delivery = whatsapp_confirmation()

    job = wait_until(FailedJob.objects.first, timeout=30, message="a failed job")
    assert job.exception_class == "notifications.exceptions.DeliveryOutcomeUnknown"
    assert slow_twilio.requests_seen == 1 and len(slow_twilio.messages) == 1
    assert slow_twilio.lookups_seen == 1
    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.FAILED


def test_a_receipt_settles_a_message_whose_send_call_went_unanswered(
    worker, slow_twilio, live_server, settings
):
    settings.NOTIFICATIONS_PUBLIC_URL = live_server.url
    slow_twilio.auto_statuses = ["sent"]
    slow_twilio.delay_next(1.5)

    delivery = whatsapp_confirmation()

    sent = Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.SENT)
    wait_until(sent.exists, timeout=30, message="the delivery marked sent by its receipt")
    time.sleep(2.5)  # past TWILIO_LOOKUP_DELAY_MS: the next attempt came, and sent nothing
    [message] = slow_twilio.messages
    assert sent.get().provider_message_id == message["sid"]
    assert slow_twilio.requests_seen == 1 and slow_twilio.lookups_seen == 0
    assert not FailedJob.objects.exists()

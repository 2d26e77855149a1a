"""Twilio answering too late: the next attempt asks Twilio before sending again."""

from collections import Counter

import pytest

from notifications.models import Delivery
from notifications.services import NotificationsService
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

RECIPIENTS = [f"+336123456{number:02d}" for number in range(6)]


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

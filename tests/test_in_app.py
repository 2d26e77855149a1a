"""The in-app channel through the one delivery sequence: claim, insert, mark sent."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.channels import get_channel
from notifications.exceptions import PermanentDeliveryError
from notifications.models import Delivery, InAppNotification
from tests.factories import new_delivery

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def payload(django_user_model):
    user = django_user_model.objects.create(username="ada")
    delivery = new_delivery(user.pk, channel="in_app", template="in_app")
    return {
        "delivery_id": delivery.pk,
        "channel": "in_app",
        "recipient": str(user.pk),
        "template": "in_app",
        "context": {"title": "Hello", "body": "Body", "link": "/x"},
        "language": "en",
    }


def status(payload):
    delivery = Delivery.objects.get(pk=payload["delivery_id"])
    return delivery.status, delivery.attempts


def left_sending(payload, *, ago):
    Delivery.objects.filter(pk=payload["delivery_id"]).update(
        status=Delivery.Status.SENDING, attempts=1, updated_at=timezone.now() - ago
    )


def test_delivering_twice_writes_one_notification(payload):
    channel = get_channel("in_app")

    channel.deliver(payload)
    channel.deliver(payload)

    notification = InAppNotification.objects.get()
    assert (notification.title, notification.body, notification.link) == ("Hello", "Body", "/x")
    assert notification.delivery_id == payload["delivery_id"]
    assert status(payload) == (Delivery.Status.SENT, 1)


def test_an_attempt_that_stopped_before_the_insert_is_sent_by_the_next(payload):
    left_sending(payload, ago=timedelta(hours=1))

    get_channel("in_app").deliver(payload)

    assert InAppNotification.objects.count() == 1
    assert status(payload) == (Delivery.Status.SENT, 2)


def test_an_attempt_that_stopped_after_the_insert_is_only_marked_sent(payload):
    left_sending(payload, ago=timedelta(hours=1))
    InAppNotification.objects.create(recipient_id=payload["recipient"], delivery_id=payload["delivery_id"])

    assert get_channel("in_app").deliver(payload) is None

    assert InAppNotification.objects.count() == 1
    assert status(payload)[0] == Delivery.Status.SENT


def test_a_missing_user_is_a_permanent_error(payload, django_user_model):
    django_user_model.objects.all().delete()

    with pytest.raises(PermanentDeliveryError, match="does not exist"):
        get_channel("in_app").deliver(payload)

    assert status(payload)[0] == Delivery.Status.FAILED


def test_a_missing_delivery_is_a_permanent_error(payload):
    Delivery.objects.all().delete()

    with pytest.raises(PermanentDeliveryError, match="does not exist"):
        get_channel("in_app").deliver(payload)

"""The in-app channel: the delivery is marked sent and its notification written at once.

On PostgreSQL that is one statement; on other databases (scripts/test --unit runs these tests on
SQLite) one transaction.
"""

import pytest

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


def test_delivering_twice_writes_one_notification(payload):
    channel = get_channel("in_app")

    channel.deliver(payload)
    channel.deliver(payload)

    notification = InAppNotification.objects.get()
    assert (notification.title, notification.body, notification.link) == ("Hello", "Body", "/x")
    assert notification.delivery_id == payload["delivery_id"]
    assert status(payload) == (Delivery.Status.SENT, 1)


def test_a_failed_delivery_is_written_by_its_retry(payload):
    Delivery.objects.mark_failed(payload["delivery_id"], "OperationalError: the database was down")

    get_channel("in_app").deliver(payload)

    assert InAppNotification.objects.count() == 1
    assert status(payload) == (Delivery.Status.SENT, 1)
    assert Delivery.objects.get(pk=payload["delivery_id"]).last_error == ""


def test_a_missing_user_is_a_permanent_error(payload, django_user_model):
    django_user_model.objects.all().delete()

    with pytest.raises(PermanentDeliveryError, match="does not exist"):
        get_channel("in_app").deliver(payload)

    assert status(payload)[0] == Delivery.Status.FAILED


def test_a_missing_delivery_is_a_permanent_error(payload):
    Delivery.objects.all().delete()

    with pytest.raises(PermanentDeliveryError, match="does not exist"):
        get_channel("in_app").deliver(payload)

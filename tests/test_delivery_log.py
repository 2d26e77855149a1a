"""The delivery log's status changes, each one statement on Delivery's queryset."""

import pytest

from notifications.exceptions import PermanentDeliveryError, TransientDeliveryError
from notifications.models import Delivery
from tests.factories import new_delivery

pytestmark = pytest.mark.django_db

Status = Delivery.Status


def test_an_attempt_that_fails_then_one_that_succeeds():
    row = new_delivery()

    assert Delivery.objects.claim(row.pk)
    assert not Delivery.objects.claim(row.pk), "a row being sent was claimed twice"
    Delivery.objects.record_error(row.pk, TransientDeliveryError("Twilio is down", code=20500))
    row.refresh_from_db()
    assert (row.status, row.attempts, row.error_code) == (Status.QUEUED, 1, "20500")
    assert row.last_error.startswith("TransientDeliveryError: Twilio is down")

    assert Delivery.objects.claim(row.pk)
    Delivery.objects.mark_sent(row.pk, "SM1")
    row.refresh_from_db()
    assert (row.status, row.attempts, row.provider_message_id) == (Status.SENT, 2, "SM1")
    assert (row.last_error, row.error_code) == ("", "")
    assert row.sent_at is not None


def test_a_sent_delivery_is_neither_claimed_nor_failed_again():
    row = new_delivery()
    Delivery.objects.claim(row.pk)
    Delivery.objects.mark_sent(row.pk, "SM1")

    assert not Delivery.objects.claim(row.pk)
    Delivery.objects.record_error(row.pk, PermanentDeliveryError("late error"))
    Delivery.objects.mark_failed(row.pk, "PermanentDeliveryError: late error")
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error) == (Status.SENT, 1, "")


def test_a_permanent_error_fails_the_delivery():
    row = new_delivery()
    Delivery.objects.claim(row.pk)

    Delivery.objects.record_error(row.pk, PermanentDeliveryError("unsubscribed", code=21610))
    row.refresh_from_db()

    assert (row.status, row.attempts, row.error_code) == (Status.FAILED, 1, "21610")


def test_a_failed_delivery_is_requeued_and_can_be_claimed_by_its_retry():
    row = new_delivery()
    Delivery.objects.mark_failed(row.pk, "TransientDeliveryError: down")

    assert Delivery.objects.requeue([row.pk]) == 1
    assert Delivery.objects.get(pk=row.pk).status == Status.QUEUED
    Delivery.objects.mark_failed(row.pk, "TransientDeliveryError: down")
    assert Delivery.objects.claim(row.pk), "a retry that ran before its requeue committed was refused"


def test_requeue_leaves_sent_and_queued_deliveries_alone():
    sent, queued = new_delivery(), new_delivery()
    Delivery.objects.mark_sent(sent.pk, "SM1")

    assert Delivery.objects.requeue([sent.pk, queued.pk]) == 0
    assert Delivery.objects.get(pk=sent.pk).status == Status.SENT

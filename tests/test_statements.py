"""The delivery log's statements, written by hand and prepared on PostgreSQL."""

import pytest
from django.db import DatabaseError, connection, transaction

from notifications import delivery, statements
from notifications.exceptions import PermanentDeliveryError, TransientDeliveryError
from notifications.models import Delivery
from tests.test_in_app import prepared_statements

pytestmark = pytest.mark.django_db

Status = Delivery.Status


SMS = {"channel": "sms", "template": "plain", "recipient": "+33612345678"}


def new_delivery():
    return Delivery.objects.create(**SMS)


def test_an_attempt_that_fails_then_one_that_succeeds():
    row = new_delivery()

    assert delivery.claim_row(row.pk)
    assert not delivery.claim_row(row.pk), "a row being sent was claimed twice"
    delivery.record_attempt_error(row.pk, TransientDeliveryError("Twilio is down", code=20500))
    row.refresh_from_db()
    assert (row.status, row.attempts, row.error_code) == (Status.QUEUED, 1, "20500")
    assert row.last_error.startswith("TransientDeliveryError: Twilio is down")

    assert delivery.claim_row(row.pk)
    delivery.mark_sent(row.pk, "SM1")
    row.refresh_from_db()
    assert (row.status, row.attempts, row.provider_message_id) == (Status.SENT, 2, "SM1")
    assert (row.last_error, row.error_code) == ("", "")
    assert row.sent_at is not None


def test_a_sent_delivery_is_neither_claimed_nor_failed_again():
    row = new_delivery()
    delivery.mark_sent(row.pk, "SM1", attempt=True)

    assert not delivery.claim_row(row.pk)
    delivery.record_attempt_error(row.pk, PermanentDeliveryError("late error"))
    delivery.mark_failed(row.pk, PermanentDeliveryError("late error"))
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error) == (Status.SENT, 1, "")


def test_a_permanent_error_fails_the_delivery():
    row = new_delivery()

    delivery.record_attempt_error(row.pk, PermanentDeliveryError("unsubscribed", code=21610), attempt=True)
    row.refresh_from_db()

    assert (row.status, row.attempts, row.error_code) == (Status.FAILED, 1, "21610")


@pytest.fixture
def postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are a PostgreSQL feature")


@pytest.mark.usefixtures("postgresql")
@pytest.mark.parametrize("prepared", [True, False])
def test_the_claim_is_prepared_once_per_connection_unless_turned_off(settings, prepared):
    settings.DATABASE_PREPARED_STATEMENTS = prepared

    for _ in range(3):
        delivery.claim_row(new_delivery().pk)

    claims = [text for text in prepared_statements() if "attempts = attempts + 1" in text]
    assert len(claims) == (1 if prepared else 0)


def test_errors_are_django_errors_and_spoil_the_surrounding_transaction():
    with transaction.atomic():
        with pytest.raises(DatabaseError):
            statements.execute("SELECT * FROM no_such_table WHERE id = %s", [1])
        assert connection.needs_rollback


def test_insert_saves_a_new_instance_as_save_would():
    row = statements.insert(Delivery(channel="email", template="plain", recipient="ada@example.com"))

    stored = Delivery.objects.get(pk=row.pk)
    assert (stored.channel, stored.status, stored.attempts) == ("email", Status.QUEUED, 0)
    assert stored.created_at == row.created_at and stored.updated_at == row.updated_at
    assert row.created_at is not None
    row.template = "other"
    row.save()  # an update of the same row, not a second insert
    assert Delivery.objects.get().template == "other"


@pytest.mark.usefixtures("postgresql")
def test_the_service_insert_is_prepared_once_per_connection():
    for _ in range(3):
        statements.insert(Delivery(**SMS))

    insert = 'INSERT INTO "notifications_delivery"'
    inserts = [text for text in prepared_statements() if text.startswith(insert)]
    assert len(inserts) == 1

"""Both ways the in-app channel writes its row: one PostgreSQL statement, or the portable two."""

import pytest

from notifications.channels.in_app import InAppChannel, insert_and_mark_sent
from notifications.exceptions import AlreadyDelivered, PermanentDeliveryError
from notifications.models import Delivery, InAppNotification
from tests.conftest import test_database_url as database_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def payload(django_user_model):
    user = django_user_model.objects.create(username="ada")
    delivery = Delivery.objects.create(
        idempotency_key="k", channel="in_app", template="in_app", recipient=user.pk
    )
    return {
        "delivery_id": delivery.pk,
        "channel": "in_app",
        "recipient": str(user.pk),
        "template": "in_app",
        "context": {"title": "Hello", "body": "Body", "link": "/x"},
        "language": "en",
    }


def sent(payload):
    delivery = Delivery.objects.get(pk=payload["delivery_id"])
    return delivery.status, delivery.attempts


@pytest.mark.parametrize("write", ["single_statement", "portable"])
def test_each_way_writes_once_and_marks_the_delivery_sent(payload, write):
    insert = insert_and_mark_sent if write == "single_statement" else InAppChannel().insert

    assert insert(payload) is True
    assert insert(payload) is False

    notification = InAppNotification.objects.get()
    assert (notification.title, notification.body, notification.link) == ("Hello", "Body", "/x")
    assert notification.delivery_id == payload["delivery_id"]
    assert sent(payload) == (Delivery.Status.SENT, 1)


def test_portable_way_finishes_a_delivery_an_earlier_attempt_left_half_done(payload):
    InAppNotification.objects.create(
        recipient_id=payload["recipient"], delivery_id=payload["delivery_id"], title="t"
    )

    assert InAppChannel().insert(payload) is False
    assert sent(payload)[0] == Delivery.Status.SENT


def test_deliver_once_says_already_delivered_the_second_time(payload):
    InAppChannel().deliver_once(payload)
    with pytest.raises(AlreadyDelivered):
        InAppChannel().deliver_once(payload)


def test_deliver_once_for_a_missing_delivery_is_permanent(payload):
    Delivery.objects.filter(pk=payload["delivery_id"]).delete()
    with pytest.raises(PermanentDeliveryError, match="does not exist"):
        InAppChannel().deliver_once(payload)


def prepared_statements():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [statement for (statement,) in cursor.fetchall()]


@pytest.mark.parametrize("prepared", [True, False])
def test_the_single_statement_is_prepared_once_per_connection_unless_turned_off(payload, settings, prepared):
    settings.DATABASE_PREPARED_STATEMENTS = prepared

    insert_and_mark_sent(payload)

    ours = [text for text in prepared_statements() if "INTO notifications_inappnotification" in text]
    assert len(ours) == (1 if prepared else 0)


def test_a_connection_lost_in_the_single_statement_is_marked_for_replacement(payload):
    import psycopg
    from django.db import OperationalError, connection

    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    with psycopg.connect(database_url(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])

    with pytest.raises(OperationalError):
        insert_and_mark_sent(payload)

    assert connection.errors_occurred and not connection.is_usable()
    connection.close()

"""Retention: old sent and failed deliveries and old read in-app notifications go, in batches;
whatever is still to send, and whatever the user has not read, stays."""

from datetime import timedelta
from io import StringIO

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from periodiq import CronSpec

from notifications import retention, tasks
from notifications.models import Delivery, InAppNotification

pytestmark = pytest.mark.django_db

Status = Delivery.Status
DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def retention_settings(settings):
    settings.NOTIFICATIONS_DELIVERY_RETENTION_DAYS = 180
    settings.NOTIFICATIONS_READ_INAPP_RETENTION_DAYS = 90


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create(username="ada")


def delivery(status, age, *, changed=None):
    """A delivery created ``age`` ago and last changed ``changed`` ago (default: when created)."""
    row = Delivery.objects.create(
        channel="email", template="plain", recipient="ada@example.com", status=status
    )
    now = timezone.now()
    Delivery.objects.filter(pk=row.pk).update(created_at=now - age, updated_at=now - (changed or age))
    return row


def notification(user, *, read=None, delivery=None):
    """An in-app notification, read ``read`` ago (None: unread)."""
    return InAppNotification.objects.create(
        recipient=user,
        delivery=delivery,
        title="Report ready",
        read_at=None if read is None else timezone.now() - read,
    )


def remaining(model, rows):
    pks = set(model.objects.values_list("pk", flat=True))
    return sorted(name for name, row in rows.items() if row.pk in pks)


def purge(*args):
    out = StringIO()
    call_command("purge_notifications", *args, stdout=out)
    return out.getvalue().strip()


@pytest.fixture
def deliveries():
    return {
        "sent_200_days": delivery(Status.SENT, 200 * DAY),
        "failed_200_days": delivery(Status.FAILED, 200 * DAY),
        "scheduled_400_days": delivery(Status.SCHEDULED, 400 * DAY),
        "queued_400_days": delivery(Status.QUEUED, 400 * DAY),
        "sending_400_days": delivery(Status.SENDING, 400 * DAY),
        "sent_10_days": delivery(Status.SENT, 10 * DAY),
        "failed_200_days_retried_5_days_ago": delivery(Status.FAILED, 200 * DAY, changed=5 * DAY),
    }


@pytest.fixture
def notifications(user):
    return {
        "read_100_days_ago": notification(user, read=100 * DAY),
        "read_10_days_ago": notification(user, read=10 * DAY),
        "unread": notification(user),
    }


def test_old_final_deliveries_go_and_waiting_or_recent_ones_stay(deliveries):
    result = retention.purge_notifications()

    assert (result.deliveries, result.read_inapp) == (2, 0)
    assert remaining(Delivery, deliveries) == [
        "failed_200_days_retried_5_days_ago",
        "queued_400_days",
        "scheduled_400_days",
        "sending_400_days",
        "sent_10_days",
    ]


@pytest.mark.parametrize("status", [Status.DELIVERED, Status.UNDELIVERED, Status.SUPPRESSED])
def test_old_deliveries_settled_by_a_receipt_or_suppressed_go_too(status):
    old, recent = delivery(status, 200 * DAY), delivery(status, 10 * DAY)

    assert retention.purge_notifications().deliveries == 1
    assert list(Delivery.objects.values_list("pk", flat=True)) == [recent.pk]
    assert old.pk != recent.pk


def test_even_zero_days_keeps_deliveries_still_to_send(deliveries):
    assert retention.purge_notifications(delivery_days=0).deliveries == 4

    assert remaining(Delivery, deliveries) == ["queued_400_days", "scheduled_400_days", "sending_400_days"]


def test_old_read_notifications_go_and_unread_ones_stay(user, notifications):
    # Created long ago or not: a notification's age here is the time since it was read.
    InAppNotification.objects.update(created_at=timezone.now() - 400 * DAY)

    result = retention.purge_notifications()

    assert (result.deliveries, result.read_inapp) == (0, 1)
    assert remaining(InAppNotification, notifications) == ["read_10_days_ago", "unread"]


def test_the_notification_of_a_purged_delivery_stays(user):
    sent = delivery(Status.SENT, 200 * DAY)
    shown = notification(user, delivery=sent)

    assert retention.purge_notifications().deliveries == 1

    assert not Delivery.objects.filter(pk=sent.pk).exists()
    shown.refresh_from_db()
    assert shown.delivery is None and shown.read_at is None and shown.title == "Report ready"


def test_a_dry_run_counts_and_deletes_nothing(deliveries, notifications):
    result = retention.purge_notifications(dry_run=True)

    assert (result.deliveries, result.read_inapp) == (2, 1)
    assert str(result) == "Dry run: would have deleted 2 deliveries, 1 read in-app notifications"
    assert Delivery.objects.count() == len(deliveries)
    assert InAppNotification.objects.count() == len(notifications)


def test_a_small_batch_size_deletes_everything_one_batch_at_a_time(user):
    for _ in range(7):
        notification(user, read=100 * DAY, delivery=delivery(Status.SENT, 200 * DAY))
    kept = delivery(Status.QUEUED, 200 * DAY)
    table = Delivery._meta.db_table

    with CaptureQueriesContext(connection) as queries:
        result = retention.purge_notifications(batch_size=2)

    assert (result.deliveries, result.read_inapp) == (7, 7)
    assert list(Delivery.objects.values_list("pk", flat=True)) == [kept.pk]
    assert InAppNotification.objects.count() == 0
    deletes = [query for query in queries if query["sql"].startswith(f'DELETE FROM "{table}"')]
    assert len(deletes) == 4  # 2, 2, 2 and 1


def test_bad_values_are_refused(deliveries):
    with pytest.raises(ValueError, match="0 or more"):
        retention.purge_notifications(delivery_days=-1)
    with pytest.raises(ValueError, match="0 or more"):
        retention.purge_notifications(read_inapp_days=-1)
    with pytest.raises(ValueError, match="1 or more"):
        retention.purge_notifications(batch_size=0)

    assert Delivery.objects.count() == len(deliveries)


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        (["--delivery-days", "-1"], "-1 is not a number of days"),
        (["--read-inapp-days", "ninety"], "ninety is not a number of days"),
        (["--batch-size", "0"], "0 is not a batch size"),
    ],
)
def test_the_command_refuses_bad_values(deliveries, arguments, error):
    with pytest.raises(CommandError, match=error):
        purge(*arguments)

    assert Delivery.objects.count() == len(deliveries)


def test_the_command_purges_and_dry_runs(deliveries, notifications):
    assert purge("--delivery-days", "0", "--dry-run") == (
        "Dry run: would have deleted 4 deliveries, 1 read in-app notifications"
    )
    assert Delivery.objects.count() == len(deliveries)

    assert purge("--read-inapp-days", "5", "--batch-size", "1") == (
        "deleted 2 deliveries, 2 read in-app notifications"
    )
    assert remaining(InAppNotification, notifications) == ["unread"]


def test_the_nightly_job_applies_the_settings(settings, deliveries, notifications):
    settings.NOTIFICATIONS_DELIVERY_RETENTION_DAYS = 7
    settings.NOTIFICATIONS_READ_INAPP_RETENTION_DAYS = 365

    assert isinstance(tasks.purge_notifications.options["periodic"], CronSpec)
    assert str(tasks.purge_notifications.options["periodic"]) == "37 3 * * *"
    assert tasks.purge_notifications.queue_name == "maintenance"
    tasks.purge_notifications()

    assert remaining(Delivery, deliveries) == [
        "failed_200_days_retried_5_days_ago",
        "queued_400_days",
        "scheduled_400_days",
        "sending_400_days",
    ]
    assert InAppNotification.objects.count() == len(notifications)


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_delivery_locked_elsewhere_is_skipped_not_waited_for():
    """An operator retrying an old failed delivery holds its row: the purge leaves it for next time."""
    held = delivery(Status.FAILED, 200 * DAY)
    others = [delivery(Status.SENT, 200 * DAY) for _ in range(3)]
    db = connection.settings_dict
    with (
        psycopg.connect(
            host=db["HOST"] or None, port=db["PORT"] or None, user=db["USER"] or None, dbname=db["NAME"]
        ) as operator,
        connection.cursor() as cursor,
    ):
        operator.execute(f'SELECT 1 FROM "{Delivery._meta.db_table}" WHERE id = %s FOR UPDATE', [held.pk])
        cursor.execute("SET lock_timeout = '5s'")  # a purge that waited would fail, not hang
        try:
            result = retention.purge_notifications(batch_size=2)
        finally:
            cursor.execute("RESET lock_timeout")
            operator.rollback()
    assert result.deliveries == 3
    assert list(Delivery.objects.values_list("pk", flat=True)) == [held.pk]
    assert not Delivery.objects.filter(pk__in=[row.pk for row in others]).exists()

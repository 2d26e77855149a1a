"""Quiet hours: a text message that can wait is scheduled for the end of the user's window."""

from datetime import UTC, datetime, time, timedelta

import pytest
from django.utils import timezone

from notifications import outbox, preferences
from notifications.exceptions import InvalidNotification
from notifications.models import Delivery
from notifications.preferences import quiet_until
from notifications.services import NotificationsService
from tests.helpers import wait_until

PHONE = "+33612345678"


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        # 22:00-07:00 in Paris (UTC+1 in January): 23:30 local is inside, until 07:00 the next day.
        (datetime(2026, 1, 10, 22, 30, tzinfo=UTC), datetime(2026, 1, 11, 6, 0, tzinfo=UTC)),
        # 03:00 local, after midnight: until 07:00 the same day.
        (datetime(2026, 1, 11, 2, 0, tzinfo=UTC), datetime(2026, 1, 11, 6, 0, tzinfo=UTC)),
        # 07:00 local: the window is over.
        (datetime(2026, 1, 11, 6, 0, tzinfo=UTC), None),
        # 21:59 local: not yet.
        (datetime(2026, 1, 10, 20, 59, tzinfo=UTC), None),
        # Summer time (UTC+2): the window follows the local clock.
        (datetime(2026, 7, 10, 21, 0, tzinfo=UTC), datetime(2026, 7, 11, 5, 0, tzinfo=UTC)),
    ],
)
def test_a_window_across_midnight_in_the_users_time_zone(moment, expected):
    assert quiet_until(time(22), time(7), "Europe/Paris", moment) == expected


def test_a_window_within_a_day_and_an_empty_one():
    afternoon = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    assert quiet_until(time(13), time(15), "UTC", afternoon) == datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    assert quiet_until(time(15), time(17), "UTC", afternoon) is None
    assert quiet_until(time(9), time(9), "UTC", afternoon) is None


@pytest.fixture
def ada(django_user_model, db):
    return django_user_model.objects.create(username="ada")


def quiet_now(user):
    """Quiet hours that hold the current moment, ending in about two hours."""
    now = timezone.now()
    starts, ends = now - timedelta(hours=1), now + timedelta(hours=2)
    preferences.set_quiet_hours(user, starts.time(), ends.time(), "UTC")
    return (now + timedelta(hours=2)).replace(second=0, microsecond=0)


@pytest.mark.django_db
def test_only_text_messages_of_non_critical_categories_wait(ada, stub_broker):
    service = NotificationsService()
    ends = quiet_now(ada)

    sms = service.send_sms(PHONE, text="Your parcel", for_user=ada)
    whatsapp = service.send_whatsapp(PHONE, text="Your parcel", for_user=ada)
    alert = service.send_sms(PHONE, text="New sign-in", for_user=ada, category="security")
    in_app = service.create_inapp_notification(ada, title="Your parcel")

    for delivery in (sms, whatsapp):
        assert delivery.status == Delivery.Status.SCHEDULED
        assert abs(delivery.send_at - ends) < timedelta(minutes=1)
    assert alert.status == in_app.status == Delivery.Status.QUEUED


@pytest.mark.django_db
def test_a_message_scheduled_into_quiet_hours_waits_for_their_end(ada, stub_broker):
    preferences.set_quiet_hours(ada, "22:00", "07:00", "Europe/Paris")
    tomorrow_night = (timezone.now() + timedelta(days=1)).astimezone(UTC).replace(hour=23, minute=0)

    delivery = NotificationsService().send_sms(PHONE, text="x", for_user=ada, send_at=tomorrow_night)

    assert delivery.send_at.astimezone(UTC).hour in (5, 6)  # 07:00 in Paris, summer or winter


@pytest.mark.django_db
def test_bad_quiet_hours_are_refused(ada):
    with pytest.raises(InvalidNotification, match="time zone"):
        preferences.set_quiet_hours(ada, "22:00", "07:00", "Mars/Olympus")
    with pytest.raises(InvalidNotification, match="starts must be a time"):
        preferences.set_quiet_hours(ada, "late", "07:00", "UTC")


@pytest.mark.django_db(transaction=True)
def test_a_deferred_sms_is_sent_by_the_dispatcher_when_quiet_hours_end(ada, worker, fake_twilio):
    delivery = NotificationsService().send_sms(PHONE, text="Good morning", for_user=ada)
    assert delivery.status == Delivery.Status.QUEUED  # no quiet hours yet
    quiet_now(ada)
    deferred = NotificationsService().send_sms(PHONE, text="Your parcel", for_user=ada)
    assert deferred.status == Delivery.Status.SCHEDULED
    wait_until(lambda: len(fake_twilio.messages) == 1, message="the first SMS")

    outbox.dispatch_due()  # still quiet: nothing to send
    assert Delivery.objects.get(pk=deferred.pk).status == Delivery.Status.SCHEDULED

    # The window ends (the worker checks it again as it sends).
    preferences.clear_quiet_hours(ada)
    Delivery.objects.filter(pk=deferred.pk).update(send_at=timezone.now() - timedelta(seconds=1))
    assert outbox.dispatch_due().due == 1

    wait_until(lambda: Delivery.objects.get(pk=deferred.pk).status == Delivery.Status.SENT, message="sent")
    assert [message["body"] for message in fake_twilio.messages][-1] == "Your parcel"


@pytest.mark.django_db(transaction=True)
def test_quiet_hours_set_after_the_call_hold_a_message_that_waited(ada, worker, fake_twilio):
    """A reminder scheduled yesterday, due now, inside quiet hours the user set since: it waits again."""
    reminder = NotificationsService().send_sms(
        PHONE, text="See you at 10", for_user=ada, send_at=timezone.now() + timedelta(hours=1)
    )
    ends = quiet_now(ada)
    Delivery.objects.filter(pk=reminder.pk).update(send_at=timezone.now() - timedelta(seconds=1))

    assert outbox.dispatch_due().due == 1

    rescheduled = Delivery.objects.filter(pk=reminder.pk, status=Delivery.Status.SCHEDULED)
    wait_until(rescheduled.exists, message="the reminder scheduled again")
    assert abs(rescheduled.get().send_at - ends) < timedelta(minutes=1)
    assert rescheduled.get().attempts == 0
    assert fake_twilio.requests_seen == 0

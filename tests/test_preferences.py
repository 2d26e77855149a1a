"""Recipients' preferences, applied at call time and again when a notification that waited goes: per
category and channel, critical ones always on."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications import outbox, preferences
from notifications.exceptions import InvalidNotification
from notifications.models import Delivery, NotificationPreference
from notifications.services import NotificationsService
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db

PHONE = "+33612345678"


@pytest.fixture
def service():
    return NotificationsService()


@pytest.fixture
def ada(django_user_model):
    return django_user_model.objects.create(username="ada", email="ada@example.com")


def test_a_category_turned_off_on_a_channel_is_skipped_there_only(service, ada, stub_broker):
    preferences.set_preference(ada, "marketing", "email", False)

    off = service.send_abandon_recovery(ada.email, resume_url="https://x.test/r", for_user=ada)
    other_channel = service.send_sms(PHONE, text="Offer", for_user=ada, category="marketing")
    other_category = service.send_invitation_email(
        ada.email, invite_url="https://x.test/i", inviter_name="Bob", for_user=ada
    )

    assert off.status == Delivery.Status.SKIPPED
    assert off.last_error == "The user turned off News and offers by Email."
    assert other_channel.status == Delivery.Status.QUEUED
    assert other_category.status == Delivery.Status.QUEUED


def test_turning_a_category_back_on_sends_again(service, ada, stub_broker):
    preferences.set_preference(ada, "updates", "sms", False)
    preferences.set_preference(ada, "updates", "sms", True)

    assert service.send_sms(PHONE, text="Hello", for_user=ada).status == Delivery.Status.QUEUED


def test_in_app_notifications_follow_their_recipients_preferences(service, ada, django_user_model):
    bob = django_user_model.objects.create(username="bob")
    preferences.set_preference(ada, "appointments", "in_app", False)

    skipped = service.create_inapp_notification(ada, title="Moved", category="appointments")
    sent_to_bob = service.create_inapp_notification(bob, title="Moved", category="appointments")

    assert skipped.status == Delivery.Status.SKIPPED
    assert sent_to_bob.status == Delivery.Status.QUEUED


def test_critical_categories_cannot_be_turned_off_and_always_go(service, ada, stub_broker):
    with pytest.raises(InvalidNotification, match="cannot be turned off"):
        preferences.set_preference(ada, "security", "sms", False)
    # A row written some other way (an old setting, the shell) does not stop them either.
    NotificationPreference.objects.create(user=ada, category="verification", channel="email", enabled=False)
    NotificationPreference.objects.create(user=ada, category="security", channel="sms", enabled=False)

    verification = service.send_verification_email(
        ada.email, verification_url="https://x.test/v", for_user=ada
    )
    alert = service.send_sms(PHONE, text="New sign-in", for_user=ada, category="security")

    assert verification.status == alert.status == Delivery.Status.QUEUED
    assert "unsubscribe_url" not in verification.context


def test_without_a_user_no_preference_applies(service, ada, stub_broker):
    preferences.set_preference(ada, "marketing", "email", False)

    delivery = service.send_abandon_recovery(ada.email, resume_url="https://x.test/r")

    assert delivery.status == Delivery.Status.QUEUED


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"category": "promotions"}, "Unknown category 'promotions'"),
        ({"for_user": "ada"}, "for_user must be a user or a user id"),
    ],
)
def test_bad_categories_and_users_are_refused_at_call_time(service, options, error):
    with pytest.raises(InvalidNotification, match=error):
        service.send_sms(PHONE, text="x", **options)
    assert not Delivery.objects.exists()


def test_an_unsaved_user_is_refused(service, django_user_model):
    with pytest.raises(InvalidNotification, match="saved"):
        service.send_sms(PHONE, text="x", for_user=django_user_model(username="new"))


def test_a_user_id_works_like_the_user(service, ada, stub_broker):
    preferences.set_preference(ada, "updates", "whatsapp", False)

    assert service.send_whatsapp(PHONE, text="x", for_user=ada.pk).status == Delivery.Status.SKIPPED


def test_preferences_of_lists_every_category_on_every_channel(ada):
    preferences.set_preference(ada, "marketing", "sms", False)

    rows = {row["category"]: row for row in preferences.preferences_of(ada)}

    assert rows["marketing"]["channels"] == {"email": True, "sms": False, "whatsapp": True, "in_app": True}
    assert rows["security"]["critical"] and all(rows["security"]["channels"].values())


def test_set_preferences_changes_nothing_when_one_change_is_invalid(ada):
    with pytest.raises(InvalidNotification, match="Unknown channel"):
        preferences.set_preferences(ada, [("marketing", "email", False), ("marketing", "fax", False)])

    assert not NotificationPreference.objects.exists()


def due_now(delivery):
    Delivery.objects.filter(pk=delivery.pk).update(send_at=timezone.now() - timedelta(seconds=1))


@pytest.mark.django_db(transaction=True)
def test_a_reminder_turned_off_after_it_was_scheduled_is_skipped_when_it_falls_due(
    service, ada, worker, fake_twilio
):
    tomorrow = timezone.now() + timedelta(days=1)
    reminder = service.send_sms(
        PHONE, text="See you", for_user=ada, category="appointments", send_at=tomorrow
    )
    other = service.send_sms(PHONE, text="Your parcel", for_user=ada, send_at=tomorrow)
    assert (reminder.for_user_id, reminder.category) == (ada.pk, "appointments")
    preferences.set_preference(ada, "appointments", "sms", False)  # the next morning
    due_now(reminder)
    due_now(other)

    assert outbox.dispatch_due().due == 2

    wait_until(lambda: len(fake_twilio.messages) == 1, message="the other SMS sent")
    skipped = Delivery.objects.filter(pk=reminder.pk, status=Delivery.Status.SKIPPED)
    wait_until(skipped.exists, message="the reminder skipped")
    assert skipped.get().last_error == "The user turned off Appointments by SMS."
    assert [message["body"] for message in fake_twilio.messages] == ["Your parcel"]


@pytest.mark.django_db(transaction=True)
def test_an_in_app_notification_that_waited_follows_the_preference_too(service, ada, worker):
    later = timezone.now() + timedelta(hours=1)
    waited = service.create_inapp_notification(ada, title="Offer", category="marketing", send_at=later)
    preferences.set_preference(ada, "marketing", "in_app", False)
    due_now(waited)

    assert outbox.dispatch_due().due == 1

    skipped = Delivery.objects.filter(pk=waited.pk, status=Delivery.Status.SKIPPED)
    wait_until(skipped.exists, message="the in-app notification skipped")
    assert skipped.get().last_error == "The user turned off News and offers by In-app."
    assert not ada.inapp_notifications.exists()

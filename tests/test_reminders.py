"""Appointment reminders: scheduled at their time, moved with the appointment, cancelled with it."""

from datetime import timedelta

import dramatiq
import pytest
from django.utils import timezone

from notifications import outbox
from notifications.exceptions import InvalidNotification
from notifications.models import Delivery
from notifications.services import NotificationsService
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

ADA, BOB = "+33612345678", "+33698765432"


@pytest.fixture
def service():
    return NotificationsService()


def appointment(**changes):
    return {"id": 42, "starts_at": timezone.now() + timedelta(days=3), "location": "Paris", **changes}


def reminders(status=None):
    rows = Delivery.objects.filter(template__startswith="appointment_reminder_").order_by("send_at", "pk")
    return rows if status is None else rows.filter(status=status)


def test_both_reminders_are_scheduled_at_their_time_per_recipient_and_channel(service, stub_broker):
    visit = appointment()

    created = [
        *service.schedule_appointment_reminders(ADA, appointment=visit, channels=["sms", "whatsapp"]),
        *service.schedule_appointment_reminders(BOB, appointment=visit),
    ]

    assert len(created) == 6 and {d.status for d in created} == {Delivery.Status.SCHEDULED}
    due = {(d.recipient, d.channel, d.template): d.send_at for d in created}
    assert due[(ADA, "sms", "appointment_reminder_day_before")] == visit["starts_at"] - timedelta(days=1)
    assert due[(BOB, "sms", "appointment_reminder_hour_before")] == visit["starts_at"] - timedelta(hours=1)
    assert stub_broker.queues["sms"].qsize() == 0, "nothing waits in Redis"
    again = service.schedule_appointment_reminders(ADA, appointment=visit, channels=["sms", "whatsapp"])
    assert {d.pk for d in again} <= {d.pk for d in created}


def test_a_reminder_whose_time_has_passed_is_skipped_not_sent(service, stub_broker):
    this_afternoon = appointment(starts_at=timezone.now() + timedelta(hours=3))

    day_before, hour_before = service.schedule_appointment_reminders(ADA, appointment=this_afternoon)

    assert day_before.status == Delivery.Status.SKIPPED
    assert "had passed" in day_before.last_error
    assert hour_before.status == Delivery.Status.SCHEDULED
    assert stub_broker.queues["sms"].qsize() == 0


def test_reminders_move_with_the_appointment(service, stub_broker):
    visit = appointment()
    service.schedule_appointment_reminders(ADA, appointment=visit, language="fr")
    moved = {**visit, "starts_at": visit["starts_at"] + timedelta(days=2)}

    new = service.reschedule_appointment_reminders(moved)

    assert reminders(Delivery.Status.CANCELLED).count() == 2
    assert [d.send_at for d in new] == [
        moved["starts_at"] - timedelta(days=1),
        moved["starts_at"] - timedelta(hours=1),
    ]
    assert {(d.recipient, d.channel, d.language, d.status) for d in new} == {
        (ADA, "sms", "fr", Delivery.Status.SCHEDULED)
    }


def test_a_reminder_of_a_cancelled_appointment_is_never_sent(service, worker, fake_twilio):
    soon = appointment(starts_at=timezone.now() + timedelta(hours=1, seconds=1))
    service.schedule_appointment_reminders(ADA, appointment=soon)
    [hour_before] = reminders(Delivery.Status.SCHEDULED)

    assert service.cancel(appointment=soon) == 1
    wait_until(lambda: timezone.now() > hour_before.send_at, timeout=5, message="the reminder's time")
    assert outbox.dispatch_due().due == 0

    hour_before.refresh_from_db()
    assert hour_before.status == Delivery.Status.CANCELLED
    assert fake_twilio.requests_seen == 0


def test_a_queued_notification_cancelled_before_a_worker_runs_it_is_not_sent(service, stub_broker):
    delivery = service.send_sms(ADA, text="never", idempotency_key="order-7-shipped")
    assert stub_broker.queues["sms"].qsize() == 1

    assert service.cancel(idempotency_key="order-7-shipped") == 1
    worker = dramatiq.Worker(stub_broker, worker_timeout=50)
    worker.start()
    try:
        stub_broker.join("sms")
        worker.join()
    finally:
        worker.stop()

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.CANCELLED and delivery.attempts == 0


def test_cancel_takes_exactly_one_selector(service):
    with pytest.raises(InvalidNotification, match="one of"):
        service.cancel()
    with pytest.raises(InvalidNotification, match="one of"):
        service.cancel(topic="a", idempotency_key="b")


def test_sent_notifications_cannot_be_cancelled(service, stub_broker, stub_worker, fake_twilio):
    delivery = service.send_sms(ADA, text="already gone", topic="order:7")
    stub_broker.join("sms")
    stub_worker.join()

    assert service.cancel(topic="order:7") == 0
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENT

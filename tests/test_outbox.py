"""The delivery log as an outbox: scheduled notifications, and messages Redis never delivered."""

import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta

import dramatiq
import pytest
from django.db import connection
from django.utils import timezone

from notifications import outbox
from notifications.exceptions import InvalidNotification
from notifications.models import Delivery, InAppNotification
from notifications.services import NotificationsService
from tests.helpers import ROOT, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def service():
    return NotificationsService()


def status(delivery):
    delivery.refresh_from_db()
    return delivery.status


def test_a_notification_scheduled_ahead_is_sent_once_not_before_its_time(service, worker, fake_twilio):
    accepted_at = []
    fake_twilio.on_accept = lambda message: accepted_at.append(timezone.now())
    send_at = timezone.now() + timedelta(seconds=2)

    delivery = service.send_sms("+33612345678", text="later", send_at=send_at)

    assert status(delivery) == Delivery.Status.SCHEDULED
    while not accepted_at and timezone.now() < send_at + timedelta(seconds=10):
        outbox.dispatch_due()
        time.sleep(0.1)
    wait_until(lambda: status(delivery) == Delivery.Status.SENT, message="the SMS sent")
    outbox.dispatch_due()
    time.sleep(0.3)
    assert len(fake_twilio.messages) == 1
    # Not before its time; at most the dispatcher's period (here 0.1 s) and a worker's pick-up after.
    assert send_at <= accepted_at[0] < send_at + timedelta(seconds=1.5)


def test_delay_schedules_like_send_at_and_a_past_time_sends_at_once(service, stub_broker, user):
    later = service.create_inapp_notification(user, title="later", delay=timedelta(minutes=5))
    now = service.create_inapp_notification(user, title="now", send_at=timezone.now() - timedelta(minutes=1))

    assert later.status == Delivery.Status.SCHEDULED
    assert abs(later.send_at - (timezone.now() + timedelta(minutes=5))) < timedelta(seconds=5)
    assert now.status == Delivery.Status.QUEUED and now.send_at is None
    assert stub_broker.queues["in_app"].qsize() == 1


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"send_at": timezone.now().replace(tzinfo=None) + timedelta(hours=1)}, "timezone-aware"),
        ({"send_at": "tomorrow"}, "timezone-aware"),
        ({"delay": 60}, "delay must be a timedelta"),
        ({"delay": timedelta(seconds=-1)}, "zero or more"),
        ({"delay": timedelta(1), "send_at": timezone.now()}, "not both"),
    ],
)
def test_bad_times_are_refused(service, user, options, error):
    with pytest.raises(InvalidNotification, match=error):
        service.create_inapp_notification(user, title="x", **options)


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create(username="ada")


LOSE_THE_ENQUEUE = """
import os
import django
django.setup()
from django.db import transaction
from notifications.services import NotificationsService

with transaction.atomic():
    transaction.on_commit(lambda: os._exit(3))  # runs first: the process dies before the enqueue
    print(NotificationsService().send_sms("+33612345678", text="not lost").pk, flush=True)
"""


def test_a_delivery_whose_enqueue_was_lost_is_sent_by_the_dispatcher(
    worker, fake_twilio, settings, process_env
):
    killed = subprocess.run(
        [sys.executable, "-c", LOSE_THE_ENQUEUE], cwd=ROOT, env=process_env, capture_output=True, text=True
    )
    assert killed.returncode == 3, killed.stderr
    delivery = Delivery.objects.get(pk=int(killed.stdout))
    time.sleep(0.5)
    assert status(delivery) == Delivery.Status.QUEUED and not fake_twilio.messages

    settings.NOTIFICATIONS_REDRIVE_AFTER_S = 0
    assert outbox.dispatch_due().redriven == 1

    wait_until(lambda: status(delivery) == Delivery.Status.SENT, message="the SMS sent")
    assert len(fake_twilio.messages) == 1


def test_redis_flushed_in_the_middle_of_a_run_every_notification_is_delivered_once(
    service, redis_broker, user, settings
):
    deliveries = [service.create_inapp_notification(user, title=f"n{number}") for number in range(2000)]
    worker = dramatiq.Worker(redis_broker, worker_timeout=50, worker_threads=4)
    worker.start()
    try:
        wait_until(
            lambda: InAppNotification.objects.count() >= 200,
            timeout=60,
            message="a first part",
            interval=0.005,
        )
        redis_broker.client.flushdb()  # the test's own Redis database loses every waiting message
        delivered_before_the_flush = InAppNotification.objects.count()
        assert delivered_before_the_flush < len(deliveries), "the run ended before the flush"

        settings.NOTIFICATIONS_REDRIVE_AFTER_S = 0
        outbox.dispatch_due()
        wait_until(
            lambda: InAppNotification.objects.count() == len(deliveries), timeout=120, message="2,000 written"
        )
        redis_broker.join("in_app")
        worker.join()
    finally:
        worker.stop()
    assert InAppNotification.objects.count() == len(deliveries)
    assert Delivery.objects.filter(status=Delivery.Status.SENT).count() == len(deliveries)


@pytest.mark.postgresql
def test_two_dispatchers_racing_over_5000_due_rows_enqueue_each_once(stub_broker, user):
    due = timezone.now() - timedelta(seconds=1)
    rows = [
        Delivery(
            channel="in_app",
            template="in_app",
            recipient=str(user.pk),
            context={"title": "t", "body": "", "link": ""},
            language="en",
            status=Delivery.Status.SCHEDULED,
            send_at=due,
            message_id=str(uuid.uuid4()),
        )
        for _ in range(5000)
    ]
    Delivery.objects.bulk_create(rows, batch_size=1000)
    results = []

    def dispatcher():
        try:
            results.append(outbox.dispatch_due(batch_size=50).due)
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatcher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    queue = stub_broker.queues["in_app"]
    message_ids = [dramatiq.Message.decode(queue.get_nowait()).message_id for _ in range(queue.qsize())]
    assert sum(results) == 5000 and all(results), results
    assert len(message_ids) == len(set(message_ids)) == 5000
    assert not Delivery.objects.filter(status=Delivery.Status.SCHEDULED).exists()


def test_with_the_queue_off_the_dispatcher_delivers_due_rows_itself(service, settings, user):
    settings.QUEUE_ENABLED = False
    delivery = service.create_inapp_notification(user, title="soon", delay=timedelta(seconds=1))
    assert status(delivery) == Delivery.Status.SCHEDULED

    time.sleep(1.1)
    assert outbox.dispatch_due().due == 1

    assert status(delivery) == Delivery.Status.SENT
    assert InAppNotification.objects.get().title == "soon"


def test_a_delivery_left_sending_with_its_message_lost_is_settled_as_unknown(
    service, worker, fake_twilio, settings
):
    from failedjobs.models import FailedJob

    delivery = service.send_sms("+33612345678", text="in doubt")
    wait_until(lambda: status(delivery) == Delivery.Status.SENT, message="sent")
    # As a worker killed mid-send with Redis then losing the message would leave it:
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.Status.SENDING, updated_at=timezone.now() - timedelta(hours=1)
    )
    settings.NOTIFICATIONS_REDRIVE_AFTER_S = 0

    assert outbox.dispatch_due().settled == 1

    job = wait_until(lambda: FailedJob.objects.first(), message="the delivery settled")
    assert job.exception_class == "notifications.exceptions.DeliveryOutcomeUnknown"
    assert status(delivery) == Delivery.Status.FAILED
    assert len(fake_twilio.messages) == 1

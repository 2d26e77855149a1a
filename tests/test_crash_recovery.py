"""What happens when a worker process dies, or the database is down, at the worst moment."""

import psycopg
import pytest
from django.core.management import call_command
from dramatiq import get_broker

from failedjobs.models import FailedJob
from notifications.models import Delivery
from notifications.services import NotificationsService
from tests.helpers import database_url, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_worker_killed_after_the_provider_accepted_does_not_send_twice(worker_process, fake_twilio):
    first = worker_process()
    fake_twilio.on_accept = lambda message: first.kill()
    delivery = NotificationsService().send_sms("+33612345678", text="exactly once")
    fake_twilio.wait_for_messages(1, timeout=30)
    first.process.wait(timeout=10)
    fake_twilio.on_accept = None
    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.SENDING

    worker_process()  # Redis hands the dead worker's unacknowledged message to this one.

    job = wait_until(
        lambda: FailedJob.objects.first(), timeout=45, message="the interrupted message in FailedJob"
    )
    assert job.exception_class == "notifications.exceptions.DeliveryOutcomeUnknown"
    assert job.message_id == delivery.message_id
    assert fake_twilio.requests_seen == 1
    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.FAILED


def test_database_down_during_capture_is_reconciled_once(worker_process, fake_twilio):
    fake_twilio.fail_always(400, 21211)
    delivery = NotificationsService().send_sms("+33612345678", text="hi")
    worker = worker_process(DATABASE_URL="postgres://postgres@127.0.0.1:1/unreachable")

    client = get_broker().client
    wait_until(
        lambda: client.zcard("dramatiq:sms.XQ") == 1, timeout=45, message="message in the dead-letter queue"
    )
    worker.stop()
    assert FailedJob.objects.count() == 0

    call_command("reconcile_dead_letters")
    call_command("reconcile_dead_letters")

    job = FailedJob.objects.get()
    assert job.message_id == delivery.message_id
    assert job.source == FailedJob.Source.RECONCILED
    assert job.exception_class == "django.db.utils.OperationalError"
    assert "Is the server running" in job.exception_message
    assert client.zcard("dramatiq:sms.XQ") == 0
    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.FAILED


def test_a_provider_refusal_while_the_database_drops_keeps_the_providers_error(worker_process, fake_twilio):
    worker_process(PGAPPNAME="notifications-worker")
    fake_twilio.fail_next(400, 21211, "The 'To' number is not a valid phone number.")

    def database_drops_the_worker():
        with psycopg.connect(
            database_url().replace("postgres://", "postgresql://"), autocommit=True
        ) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                ["notifications-worker"],
            )

    fake_twilio.on_request = database_drops_the_worker
    delivery = NotificationsService().send_sms("+33612345678", text="refused")

    job = wait_until(lambda: FailedJob.objects.first(), timeout=30, message="the refusal in FailedJob")
    assert job.exception_class == "notifications.exceptions.PermanentDeliveryError"
    assert "21211" in job.exception_message
    assert fake_twilio.requests_seen == 1
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    assert "21211" in delivery.last_error


def test_a_reconciled_refusal_keeps_the_providers_error(redis_broker):
    from notifications.tasks import ACTORS

    message = ACTORS["sms"].message(delivery_id=0, recipient="+33612345678")
    message.options["error"] = "notifications.exceptions.PermanentDeliveryError: refused (twilio error 21211)"
    key = "dramatiq:sms.XQ"
    redis_broker.client.zadd(key, {"r1": 1})
    redis_broker.client.hset(f"{key}.msgs", "r1", message.encode())

    call_command("reconcile_dead_letters")

    job = FailedJob.objects.get()
    assert job.exception_class == "notifications.exceptions.PermanentDeliveryError"
    assert job.exception_message == "refused (twilio error 21211)"

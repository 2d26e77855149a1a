"""The dead-letter store: what reaches FailedJob, and retrying it, on a real worker with Redis."""

from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone
from dramatiq import Message

from failedjobs import services
from failedjobs.models import FailedJob
from notifications.models import Delivery
from notifications.services import NotificationsService
from tests.factories import failed_job, job_message, new_delivery
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def service():
    return NotificationsService()


def one_failed_job(timeout=15):
    return wait_until(lambda: FailedJob.objects.first(), timeout=timeout, message="a FailedJob row")


def test_message_failing_every_time_ends_in_one_failed_job_after_six_attempts(service, worker, fake_twilio):
    fake_twilio.fail_always(500, 20500, "Internal error")
    delivery = service.send_sms("+33612345678", text="hi")

    job = one_failed_job()
    worker.join()
    assert FailedJob.objects.count() == 1
    assert fake_twilio.requests_seen == 6
    assert job.attempts == 6
    assert (job.queue_name, job.actor_name, job.message_id) == ("sms", "deliver_sms", delivery.message_id)
    assert job.exception_class == "notifications.exceptions.TransientDeliveryError"
    assert "20500" in job.exception_message
    assert "TransientDeliveryError" in job.traceback
    assert job.kwargs["recipient"] == "+33612345678"
    assert Message.decode(bytes(job.message_data)).message_id == delivery.message_id
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.attempts == 6


def test_permanent_error_after_a_retry_keeps_its_own_traceback(service, worker, fake_twilio):
    fake_twilio.fail_next(503, 20503)
    fake_twilio.fail_next(400, 21211, "The 'To' number is not a valid phone number.")
    service.send_sms("+33612345678", text="hi")

    job = one_failed_job()
    assert job.attempts == 2
    assert job.exception_class == "notifications.exceptions.PermanentDeliveryError"
    assert "PermanentDeliveryError" in job.traceback.splitlines()[-1]
    assert "TransientDeliveryError" not in job.traceback


def test_message_failing_twice_then_succeeding_leaves_no_failed_job(service, worker, fake_twilio):
    fake_twilio.fail_next(503, 20503, times=2)
    delivery = service.send_sms("+33612345678", text="hi")

    fake_twilio.wait_for_messages(1)
    wait_until(lambda: Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.SENT, message="sent")
    worker.join()
    assert FailedJob.objects.count() == 0
    assert fake_twilio.requests_seen == 3
    assert Delivery.objects.get(pk=delivery.pk).attempts == 3


@pytest.mark.parametrize("code", [21211, 21610, 21614])
def test_permanent_twilio_error_skips_retries(service, worker, fake_twilio, code):
    fake_twilio.fail_next(400, code, "Invalid 'To' Phone Number")
    delivery = service.send_sms("+33612345678", text="hi")

    job = one_failed_job()
    worker.join()
    assert fake_twilio.requests_seen == 1
    assert job.attempts == 1
    assert job.exception_class == "notifications.exceptions.PermanentDeliveryError"
    assert f"twilio error {code}" in job.exception_message
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code) == (Delivery.Status.FAILED, str(code))


def test_whatsapp_outside_the_session_window_is_permanent(service, worker, fake_twilio):
    fake_twilio.fail_next(400, 63016, "Outside the allowed window")
    service.send_whatsapp("+33612345678", text="hi")
    assert one_failed_job().attempts == 1


def test_smtp_5xx_is_permanent(service, worker, fake_smtp):
    fake_smtp.reject_next(550, "5.1.1 Mailbox unavailable")
    service.send_email("ada@example.com", subject="Hi", text="x")
    job = one_failed_job()
    assert job.attempts == 1
    assert "smtp error 550" in job.exception_message


def test_smtp_4xx_is_retried(service, worker, fake_smtp):
    fake_smtp.reject_next(451, "4.3.0 Try again later", times=2)
    delivery = service.send_email("ada@example.com", subject="Hi", text="x")
    fake_smtp.wait_for_messages(1)
    wait_until(lambda: Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.SENT, message="sent")
    assert Delivery.objects.get(pk=delivery.pk).attempts == 3
    assert FailedJob.objects.count() == 0


def test_retry_failed_command_redelivers_and_keeps_the_row(service, worker, fake_twilio):
    fake_twilio.fail_next(400, 21211)
    delivery = service.send_sms("+33612345678", text="second chance")
    job = one_failed_job()
    worker.join()

    call_command("retry_failed", str(job.pk))

    [sms] = fake_twilio.wait_for_messages(1)
    assert sms["body"] == "second chance"
    job.refresh_from_db()
    assert job.status == FailedJob.Status.RETRIED
    assert job.retry_count == 1 and job.retried_as and job.retried_as != job.message_id
    wait_until(lambda: Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.SENT, message="sent")


def test_retried_job_that_fails_again_gets_a_new_row_with_fresh_retries(service, worker, fake_twilio):
    fake_twilio.fail_next(400, 21211)
    service.send_sms("+33612345678", text="hi")
    first = one_failed_job()
    worker.join()
    fake_twilio.fail_always(500, 20500)

    call_command("retry_failed", "--all")

    second = wait_until(lambda: FailedJob.objects.exclude(pk=first.pk).first(), message="second row")
    assert second.message_id == FailedJob.objects.get(pk=first.pk).retried_as
    assert second.attempts == 6


def test_retrying_an_already_delivered_message_does_not_send_again(service, worker, fake_twilio):
    delivery = service.send_sms("+33612345678", text="once")
    fake_twilio.wait_for_messages(1)
    wait_until(lambda: Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.SENT, message="sent")
    failed_job(message=job_message("sms", delivery_id=delivery.pk, context={"text": "once"}))

    call_command("retry_failed", "--all")
    worker.join()
    worker.broker.join("sms")
    worker.join()
    assert fake_twilio.requests_seen == 1
    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.SENT


def test_recording_a_message_twice_keeps_the_first_row(stub_broker):
    message = job_message("sms")
    first = services.record_failure(message, RuntimeError("first")).pk
    second = services.record_failure(message, ValueError("second")).pk

    assert first == second
    job = FailedJob.objects.get()
    assert (job.pk, job.exception_class, job.exception_message) == (first, "builtins.RuntimeError", "first")


def test_retry_failed_filters_and_dry_run(stub_broker):
    failed_job("sms")
    failed_job("email", "ada@example.com")
    out = call_command_output("retry_failed", "--queue", "sms", "--dry-run")
    assert out.strip() == "Dry run: would have retried 1, skipped 0"
    assert FailedJob.objects.filter(status=FailedJob.Status.FAILED).count() == 2


def test_retry_failed_limit_and_batches(stub_broker):
    for _ in range(5):
        failed_job("sms")
    out = call_command_output("retry_failed", "--all", "--limit", "3", "--batch-size", "2")
    assert out.strip() == "retried 3, skipped 0"
    assert stub_broker.queues["sms"].qsize() == 3
    assert FailedJob.objects.filter(status=FailedJob.Status.RETRIED).count() == 3


def test_retry_failed_since_until(stub_broker):
    old = failed_job("sms", failed_at=timezone.now() - timedelta(days=3))
    failed_job("sms")
    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    out = call_command_output("retry_failed", "--since", since)
    assert out.strip() == "retried 1, skipped 0"
    assert FailedJob.objects.get(pk=old.pk).status == FailedJob.Status.FAILED


def test_a_retry_that_never_reaches_the_broker_leaves_the_job_failed(stub_broker, monkeypatch):
    job = failed_job("sms")

    def process_dies(messages):
        raise SystemExit("killed while enqueueing")

    monkeypatch.setattr(services.dispatch, "enqueue_many", process_dies)
    with pytest.raises(SystemExit):
        services.retry_jobs(FailedJob.objects.all())

    job.refresh_from_db()
    assert (job.status, job.retry_count, job.retried_as) == (FailedJob.Status.FAILED, 0, "")
    assert stub_broker.queues["sms"].qsize() == 0


def test_retried_message_id_is_the_one_the_database_recorded(stub_broker):
    job = failed_job("sms")

    services.retry_jobs(FailedJob.objects.all())

    job.refresh_from_db()
    queued = Message.decode(stub_broker.queues["sms"].get())
    assert (
        queued.message_id == job.retried_as == services.new_message_id(FailedJob(message_id=job.message_id))
    )
    assert job.retry_count == 1


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ([], "Nothing selected"),
        (["--since", "yesterday"], "is not a date"),
        (["999999"], "No failed job with id 999999"),
        (["--since", "2026-02-01", "--until", "2026-01-01"], "earlier than --until"),
    ],
)
def test_retry_failed_rejects_bad_filters(arguments, error):
    with pytest.raises(CommandError, match=error):
        call_command("retry_failed", *arguments)


def test_synchronous_failure_is_recorded_and_can_be_retried(service, settings, fake_smtp):
    settings.QUEUE_ENABLED = False
    fake_smtp.reject_next(550, "5.1.1 No such user")
    delivery = service.send_email("ada@example.com", subject="Hi", text="sync")

    job = FailedJob.objects.get()
    assert (job.source, job.attempts, job.actor_name) == (FailedJob.Source.SYNCHRONOUS, 1, "deliver_email")
    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.FAILED

    call_command("retry_failed", "--all")
    assert fake_smtp.wait_for_messages(1)[0]["Subject"] == "Hi"
    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.SENT


def test_age_limit_sends_the_message_to_failed_jobs(stub_broker, stub_worker, settings):
    from notifications.tasks import ACTORS

    message = ACTORS["email"].message_with_options(kwargs={"delivery_id": 0}, max_age=1)
    message = message.copy(message_timestamp=message.message_timestamp - 60_000)
    stub_broker.enqueue(message)
    stub_broker.join("email", fail_fast=False)
    stub_worker.join()
    job = FailedJob.objects.get()
    assert job.exception_class == "dramatiq.middleware.middleware.SkipMessage"
    assert mail.outbox == []


def test_purge_deletes_past_retention(settings):
    settings.FAILED_JOBS_RETENTION_DAYS = 90
    settings.FAILED_JOBS_DONE_RETENTION_DAYS = 30
    now = timezone.now()
    ancient = failed_job("sms", failed_at=now - timedelta(days=91))
    recent = failed_job("sms", failed_at=now - timedelta(days=40))
    retried = failed_job("sms", failed_at=now - timedelta(days=40), status=FailedJob.Status.RETRIED)

    out = call_command_output("purge_failed_jobs")

    assert out.strip() == "deleted 2"
    assert list(FailedJob.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not FailedJob.objects.filter(pk__in=[ancient.pk, retried.pk]).exists()


def call_command_output(*args):
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_retry_from_the_admin_redelivers_through_a_real_worker(service, worker, fake_twilio, admin_client):
    fake_twilio.fail_next(400, 21211)
    delivery = service.send_sms("+33612345678", text="from the admin")
    job = one_failed_job()
    worker.join()

    response = admin_client.post(
        "/admin/failedjobs/failedjob/",
        {"action": "retry_selected", "_selected_action": [job.pk]},
        follow=True,
    )

    assert [str(m) for m in response.context["messages"]] == ["retried 1, skipped 0"]
    assert fake_twilio.wait_for_messages(1)[0]["body"] == "from the admin"
    wait_until(lambda: Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.SENT, message="sent")
    assert FailedJob.objects.get(pk=job.pk).status == FailedJob.Status.RETRIED


def test_synchronous_retry_that_fails_again_is_not_retried_in_the_same_run(settings, fake_twilio):
    settings.QUEUE_ENABLED = False
    fake_twilio.fail_always(400, 21211)
    NotificationsService().send_sms("+33612345678", text="hopeless")
    assert FailedJob.objects.count() == 1

    out = call_command_output("retry_failed", "--all")

    assert out.strip() == "retried 1, skipped 0"
    assert FailedJob.objects.count() == 2
    assert fake_twilio.requests_seen == 2


def test_bulk_retry_enqueues_in_batches_that_a_worker_consumes(worker, django_user_model):
    from notifications.models import InAppNotification

    user = django_user_model.objects.create(username="ada")
    for number in range(30):
        delivery = new_delivery(
            str(user.pk), channel="in_app", template="in_app", idempotency_key=f"bulk-{number}"
        )
        message = job_message(
            "in_app",
            str(user.pk),
            delivery_id=delivery.pk,
            template="in_app",
            context={"title": f"n{number}", "body": "", "link": ""},
        )
        failed_job(message=message)

    out = call_command_output("retry_failed", "--all", "--batch-size", "7")

    assert out.strip() == "retried 30, skipped 0"
    wait_until(lambda: InAppNotification.objects.filter(recipient=user).count() == 30, message="30 rows")
    titles = set(InAppNotification.objects.values_list("title", flat=True))
    assert titles == {f"n{number}" for number in range(30)}


def test_bulk_retry_with_redis_down_delivers_synchronously(settings, fake_twilio, unreachable_redis):
    settings.QUEUE_ENABLED = False
    fake_twilio.fail_next(400, 21211)
    NotificationsService().send_sms("+33612345678", text="after the outage")
    settings.QUEUE_ENABLED = True

    out = call_command_output("retry_failed", "--all")

    assert out.strip() == "retried 1, skipped 0"
    assert fake_twilio.wait_for_messages(1)[0]["body"] == "after the outage"
    assert unreachable_redis.enqueue_attempts == []


def test_a_retried_job_starts_without_the_options_of_its_last_run(stub_broker):
    """A probe that failed for good carried the breaker's options; its retry is a new message."""
    options = {"retries": 5, "held": 3, "carrier": True, "row_touched_at": 1, "max_retries": 2}
    job = failed_job("sms", message=job_message("sms").copy(options=options))

    services.retry_jobs(FailedJob.objects.filter(pk=job.pk))

    retried = Message.decode(stub_broker.queues["sms"].get_nowait())
    assert retried.options == {"max_retries": 2}

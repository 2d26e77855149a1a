"""Twilio's status callbacks: signed, idempotent, order-safe; undelivered becomes a retry or a failed job.

The real SDK sends to the fake Twilio, which calls the StatusCallback URL on the live server with a
request signed as Twilio signs it.
"""

import pytest
from twilio.request_validator import RequestValidator

from failedjobs import services as failed_jobs
from failedjobs.models import FailedJob
from notifications import outbox
from notifications.models import Delivery, Suppression
from notifications.services import NotificationsService
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

Status = Delivery.Status
NUMBER = "+33612345678"


@pytest.fixture
def service():
    return NotificationsService()


@pytest.fixture
def twilio(fake_twilio, live_server, settings):
    """The fake Twilio, calling back the live server: the site's public URL."""
    settings.NOTIFICATIONS_PUBLIC_URL = live_server.url
    return fake_twilio


def sent_sms(service, twilio, count=1):
    """Send one SMS synchronously; return its delivery and the message the fake received."""
    delivery = service.send_sms(NUMBER, text="Your code is 1234")
    messages = twilio.wait_for_messages(count)
    delivery.refresh_from_db()
    return delivery, messages[-1]


@pytest.fixture
def synchronous(settings):
    settings.QUEUE_ENABLED = False


def test_each_sms_asks_for_receipts_at_its_delivery_url(service, twilio, synchronous, live_server):
    delivery, message = sent_sms(service, twilio)

    assert delivery.status == Status.SENT
    assert message["status_callback"] == f"{live_server.url}/webhooks/twilio/status/{delivery.pk}"


def test_no_public_url_no_status_callback(service, fake_twilio, synchronous):
    _, message = sent_sms(service, fake_twilio)

    assert message["status_callback"] is None


def test_delivered_is_recorded_once_and_a_late_sent_does_not_undo_it(service, twilio, synchronous):
    delivery, message = sent_sms(service, twilio)

    assert twilio.send_status(message, "delivered") == 204
    delivery.refresh_from_db()
    assert delivery.status == Status.DELIVERED and delivery.receipt_at is not None
    first_receipt = delivery.receipt_at

    assert twilio.send_status(message, "sent") == 204  # arrives late
    assert twilio.send_status(message, "delivered") == 204  # sent again by Twilio
    assert twilio.send_status(message, "undelivered", 30003) == 204  # contradicts; too late
    delivery.refresh_from_db()
    assert (delivery.status, delivery.receipt_at, delivery.error_code) == (
        Status.DELIVERED,
        first_receipt,
        "",
    )
    assert len(twilio.messages) == 1 and not FailedJob.objects.exists()


@pytest.mark.parametrize(
    "signature",
    [
        "",  # unsigned
        "bm90IGEgc2lnbmF0dXJl",  # forged
        RequestValidator("another-token").compute_signature("http://x", {}),
    ],
    ids=["unsigned", "forged", "other-token"],
)
def test_unsigned_and_forged_callbacks_get_403_and_change_nothing(service, twilio, synchronous, signature):
    delivery, message = sent_sms(service, twilio)

    assert twilio.send_status(message, "undelivered", 30005, signature=signature) == 403
    assert twilio.send_status(message, "delivered", signature=signature) == 403
    delivery.refresh_from_db()
    assert delivery.status == Status.SENT and delivery.receipt_at is None
    assert not FailedJob.objects.exists()


def test_a_signature_for_one_delivery_does_not_work_for_another(service, twilio, synchronous):
    _, first_message = sent_sms(service, twilio)
    second, _ = sent_sms(service, twilio, count=2)

    other_url = first_message["status_callback"].rsplit("/", 1)[0] + f"/{second.pk}"
    assert twilio.send_status(first_message, "delivered", url=other_url) == 403
    assert set(Delivery.objects.values_list("status", flat=True)) == {Status.SENT}


def test_a_callback_with_the_wrong_host_is_refused_behind_a_proxy(service, twilio, synchronous, settings):
    """The signature is over the public URL Twilio called, not whatever the request says."""
    delivery, message = sent_sms(service, twilio)
    settings.NOTIFICATIONS_PUBLIC_URL = "https://notifications.example.com"

    assert twilio.send_status(message, "delivered") == 403  # signed for the live server's URL
    public_url = message["status_callback"].replace(
        twilio_origin(message), "https://notifications.example.com"
    )
    parameters = twilio.status_parameters(message, "delivered")
    signature = RequestValidator(twilio.auth_token).compute_signature(public_url, parameters)
    assert twilio.post_signed(message["status_callback"], parameters, signature) == 204
    delivery.refresh_from_db()
    assert delivery.status == Status.DELIVERED


def twilio_origin(message):
    url = message["status_callback"]
    return url[: url.index("/webhooks/")]


def test_callbacks_racing_the_worker_still_end_delivered(service, twilio, worker):
    """Twilio may call back before the worker has recorded its answer: the receipt is kept."""
    twilio.auto_statuses = ["queued", "sent", "delivered"]
    delivery = service.send_sms(NUMBER, text="hi")

    wait_until(lambda: Delivery.objects.get(pk=delivery.pk).status == Status.DELIVERED, message="delivered")
    worker.join()
    delivery.refresh_from_db()
    assert delivery.status == Status.DELIVERED
    assert delivery.provider_message_id == twilio.messages[0]["sid"]


def test_undelivered_30003_is_retried_then_becomes_a_failed_job_an_operator_retries(
    service, twilio, worker, settings
):
    settings.NOTIFICATIONS_MAX_RETRIES = 1
    delivery = service.send_sms(NUMBER, text="hi")
    [message] = twilio.wait_for_messages(1)
    wait_until(lambda: Delivery.objects.get(pk=delivery.pk).status == Status.SENT, message="sent")

    assert twilio.send_status(message, "undelivered", 30003) == 204
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code) == (Status.SCHEDULED, "30003")
    assert "undelivered" in delivery.last_error and delivery.send_at is not None

    wait_until(lambda: outbox.dispatch_due().due == 1, message="the retry due")  # backoff: 10-40 ms
    second = twilio.wait_for_messages(2)[1]
    wait_until(lambda: Delivery.objects.get(pk=delivery.pk).status == Status.SENT, message="sent again")
    assert twilio.send_status(message, "undelivered", 30003) == 204  # the first message's, late
    assert Delivery.objects.get(pk=delivery.pk).status == Status.SENT

    assert twilio.send_status(second, "undelivered", 30003) == 204
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Status.UNDELIVERED, 2)
    job = FailedJob.objects.get()
    assert job.exception_class == "notifications.exceptions.Undelivered"
    assert "30003" in job.exception_message and job.kwargs["delivery_id"] == delivery.pk

    assert failed_jobs.retry_jobs(FailedJob.objects.all()).retried == 1
    twilio.wait_for_messages(3)
    wait_until(
        lambda: Delivery.objects.get(pk=delivery.pk).status == Status.SENT, message="sent by the retry"
    )


def test_a_permanent_undelivered_code_is_not_retried(service, twilio, synchronous):
    delivery, message = sent_sms(service, twilio)

    assert twilio.send_status(message, "undelivered", 30005) == 204  # unknown number
    assert twilio.send_status(message, "undelivered", 30005) == 204  # twice

    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code) == (Status.UNDELIVERED, "30005")
    assert FailedJob.objects.count() == 1
    assert outbox.dispatch_due().due == 0 and len(twilio.messages) == 1


def test_an_unsubscribed_recipient_reported_by_callback_is_suppressed(service, twilio, synchronous):
    delivery, message = sent_sms(service, twilio)

    twilio.send_status(message, "failed", 21610)

    assert Delivery.objects.get(pk=delivery.pk).status == Status.UNDELIVERED
    assert Suppression.objects.get().reason == Suppression.Reason.STOP
    assert service.send_sms(NUMBER, text="again").status == Status.SUPPRESSED


def test_the_system_check_warns_when_twilio_cannot_send_receipts(settings):
    from notifications.checks import check_receipts

    settings.NOTIFICATIONS_PUBLIC_URL = ""
    assert [message.id for message in check_receipts()] == ["notifications.W003"]
    settings.NOTIFICATIONS_PUBLIC_URL = "https://notifications.example.com"
    assert check_receipts() == []


@pytest.mark.parametrize("status", ["delivered", "sent"])
def test_a_receipt_for_a_message_whose_send_call_went_unanswered_settles_it(
    twilio, live_server, settings, status
):
    """The send call timed out (the row waits for its next attempt): the receipt is the lost answer."""
    delivery = Delivery.objects.create(
        channel="sms",
        template="plain",
        recipient=NUMBER,
        status=Status.QUEUED,
        error_code="no-answer",
        attempts=1,
    )
    message = {
        "account_sid": settings.TWILIO_ACCOUNT_SID,
        "sid": "SM" + "a" * 32,
        "from": settings.TWILIO_SMS_FROM,
        "to": NUMBER,
        "status_callback": f"{live_server.url}/webhooks/twilio/status/{delivery.pk}",
    }

    assert twilio.send_status(message, status) == 204

    delivery.refresh_from_db()
    assert delivery.status == {"delivered": Status.DELIVERED, "sent": Status.SENT}[status]
    assert (delivery.provider_message_id, delivery.error_code) == (message["sid"], "")
    assert delivery.sent_at is not None

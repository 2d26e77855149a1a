"""Bad input is refused at call time with a documented exception; whatever fails is still filed."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import dramatiq
import pytest
from django.core.management import CommandError, call_command

from failedjobs import services
from failedjobs.models import FailedJob
from notifications.exceptions import InvalidNotification, InvalidPayload, InvalidRecipient
from notifications.models import Delivery
from notifications.services import NotificationsService
from notifications.tasks import ACTORS

pytestmark = pytest.mark.django_db

APPOINTMENT = {"id": 7, "starts_at": datetime(2026, 12, 24, 9, 30, tzinfo=UTC)}


@pytest.fixture
def service():
    return NotificationsService()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create(username="ada")


@pytest.mark.parametrize("text", ["a\x00b", "a\ud800b"], ids=["nul", "lone surrogate"])
@pytest.mark.parametrize("field", ["title", "body", "link"])
def test_text_the_database_cannot_store_is_refused(service, user, stub_broker, text, field):
    arguments = {"title": "Hello", field: text}

    with pytest.raises(InvalidPayload, match=rf"context\['{field}'\] contains a"):
        service.create_inapp_notification(user, **arguments)

    assert not Delivery.objects.exists()


def test_a_nul_in_a_template_context_is_refused(service, stub_broker):
    with pytest.raises(InvalidPayload, match="NUL"):
        service.send_verification_email("ada@example.com", verification_url="https://x/\x00")


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"title": 123}, "title must be a string, not int"),
        ({"title": "Hi", "link": None}, "link must be a string, not NoneType"),
        ({"title": "Hi", "body": ["a"]}, "body must be a string, not list"),
        ({"title": "Hi", "language": 123}, "language must be a string, not int"),
        ({"title": "Hi", "dedup_key": "k", "dedup_window": 60}, "dedup_window, a timedelta"),
        ({"title": "Hi", "idempotency_key": 5}, "idempotency_key must be a string, not int"),
        ({"title": "Hi", "idempotency_key": ""}, "idempotency_key must not be empty"),
    ],
)
def test_arguments_of_the_wrong_type_are_invalid_notifications(service, user, stub_broker, arguments, error):
    with pytest.raises(InvalidNotification, match=error):
        service.create_inapp_notification(user, **arguments)


def test_plain_email_arguments_are_checked(service, stub_broker):
    with pytest.raises(InvalidNotification, match="subject must be a string"):
        service.send_email("ada@example.com", subject=None, text="x")
    with pytest.raises(InvalidNotification, match="html must be a string"):
        service.send_email("ada@example.com", subject="s", text="x", html=3)


def test_a_user_id_that_does_not_exist_is_an_invalid_recipient(service, user, stub_broker):
    with pytest.raises(InvalidRecipient, match=f"no user with id {user.pk + 1}"):
        service.create_inapp_notification(user.pk + 1, title="Hi")

    assert service.create_inapp_notification(user.pk, title="Hi").status == Delivery.Status.QUEUED


def test_an_sms_that_renders_too_long_is_refused_at_call_time(service, stub_broker):
    appointment = {**APPOINTMENT, "location": "x" * 1700}

    with pytest.raises(InvalidNotification, match="characters once rendered; the limit is 1600"):
        service.send_appointment_reminder("+33612345678", appointment=appointment, lead="day_before")
    with pytest.raises(InvalidNotification, match="limit is 1600"):
        service.send_appointment_confirmation("+33612345678", appointment=appointment, channel="whatsapp")

    assert not Delivery.objects.exists()


def test_a_key_longer_than_its_column_is_refused_not_cut(service, user, stub_broker):
    first = service.create_inapp_notification(user, title="one", idempotency_key="k" * 255)

    with pytest.raises(
        InvalidNotification, match="idempotency_key is at most 255 characters; this one is 256"
    ):
        service.create_inapp_notification(user, title="two", idempotency_key="k" * 255 + "2")
    with pytest.raises(InvalidNotification, match="dedup_key is at most 255"):
        service.create_inapp_notification(user, title="two", dedup_key="d" * 256, dedup_window=timedelta(1))

    assert list(Delivery.objects.values_list("pk", flat=True)) == [first.pk]


def poison_message():
    return ACTORS["in_app"].message(
        delivery_id=1,
        channel="in_app",
        recipient="1",
        template="in_app",
        context={"title": "a\x00b", "body": "\ud800", "link": ""},
        language="en",
    )


def test_a_failure_is_filed_whatever_text_it_carries():
    message = poison_message()

    pk = services.fail_message(message, ValueError("bad \x00 byte \udc80"))

    job = FailedJob.objects.get(pk=pk)
    assert job.kwargs["context"] == {"title": "a\ufffdb", "body": "\ufffd", "link": ""}
    assert job.exception_message == "bad \ufffd byte \ufffd"
    assert dramatiq.Message.decode(bytes(job.message_data)).kwargs["context"]["title"] == "a\x00b"


def put_dead_letter(client, queue, redis_id, blob):
    key = f"dramatiq:{queue}.XQ"
    client.zadd(key, {redis_id: 1})
    client.hset(f"{key}.msgs", redis_id, blob)


@pytest.mark.django_db(transaction=True)
def test_one_unreadable_dead_letter_does_not_stop_the_others(redis_broker):
    client = redis_broker.client
    good = [ACTORS["sms"].message(delivery_id=n, recipient="+33612345678") for n in range(7)]
    put_dead_letter(client, "sms", "aaa-corrupt", b"{not json")
    for number, message in enumerate(good):
        put_dead_letter(client, "sms", f"m{number}", message.encode())
    put_dead_letter(client, "in_app", "poison", poison_message().encode())

    with pytest.raises(CommandError, match="recovered 8; 1 could not be recovered"):
        call_command("reconcile_dead_letters", stdout=StringIO())

    assert FailedJob.objects.count() == 8
    assert client.zrange("dramatiq:sms.XQ", 0, -1) == [b"aaa-corrupt"]
    assert client.zcard("dramatiq:in_app.XQ") == 0
    assert services.reconcile_dead_letters().recovered == 0

"""Business-initiated WhatsApp messages are Twilio Content templates; free-form Body is for replies."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from failedjobs.models import FailedJob
from notifications import outbox
from notifications.exceptions import UnknownTemplate
from notifications.models import Delivery
from notifications.services import NotificationsService
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

NUMBER = "+33612345678"
VISIT = {
    "id": 42,
    "starts_at": datetime(2030, 5, 6, 9, 30, tzinfo=UTC),
    "location": "Lyon",
    "with_name": "Dr Roux",
}


@pytest.fixture
def service():
    return NotificationsService()


def test_a_reminder_reaches_twilio_as_a_content_template_with_its_variables(service, worker, fake_twilio):
    delivery = service.send_appointment_reminder(
        NUMBER, appointment=VISIT, lead="day_before", channel="whatsapp", language="fr"
    )

    [message] = fake_twilio.wait_for_messages(1)
    assert message["content_sid"] == "HX1" + "f" * 31
    # The date and time as the SMS and email templates write it, in French: not the ISO text.
    assert message["content_variables"] == {"1": "Dr Roux", "2": "lundi 6 mai 2030, 09:30", "3": "Lyon"}
    assert message["body"] == "", "no free-form text outside the session window"
    assert (message["to"], message["from"]) == ("whatsapp:" + NUMBER, "whatsapp:+14155238886")
    sent = wait_until(
        lambda: Delivery.objects.filter(pk=delivery.pk, provider_message_id=message["sid"]).first()
    )
    assert sent.status == Delivery.Status.SENT


def test_a_reply_in_the_session_window_stays_free_form(service, worker, fake_twilio):
    service.send_whatsapp(NUMBER, text="Thanks, see you then")

    [message] = fake_twilio.wait_for_messages(1)
    assert message["body"] == "Thanks, see you then" and message["content_sid"] is None


def test_a_template_without_a_content_sid_is_refused_at_call_time(service, settings):
    settings.NOTIFICATIONS_WHATSAPP_TEMPLATES = {}

    with pytest.raises(
        UnknownTemplate, match=r"NOTIFICATIONS_WHATSAPP_TEMPLATES\['appointment_confirmation'\]"
    ):
        service.send_appointment_confirmation(NUMBER, appointment=VISIT, channel="whatsapp")
    assert not Delivery.objects.exists()


def test_a_language_without_a_content_sid_is_refused_at_call_time(service, settings):
    settings.NOTIFICATIONS_WHATSAPP_TEMPLATES = {"appointment_confirmation": {"content_sids": {"en": "HXen"}}}

    with pytest.raises(UnknownTemplate, match=r"in 'fr' \(languages configured: en\)"):
        service.send_appointment_confirmation(NUMBER, appointment=VISIT, channel="whatsapp", language="fr")
    assert not Delivery.objects.exists()


def test_without_a_variables_list_the_context_keeps_its_names(service, settings, fake_twilio):
    settings.QUEUE_ENABLED = False
    settings.NOTIFICATIONS_WHATSAPP_TEMPLATES = {"appointment_confirmation": {"content_sids": {"en": "HXen"}}}

    service.send_appointment_confirmation(NUMBER, appointment=VISIT, channel="whatsapp", language="en")

    [message] = fake_twilio.messages
    assert message["content_sid"] == "HXen"
    assert message["content_variables"]["location"] == "Lyon"
    assert message["content_variables"]["appointment_id"] == "42"


def test_a_date_variable_reads_in_the_sites_time_zone(service, settings, fake_twilio):
    settings.QUEUE_ENABLED = False
    settings.TIME_ZONE = "Europe/Paris"  # UTC+2 in May

    service.send_appointment_confirmation(NUMBER, appointment=VISIT, channel="whatsapp", language="en")

    [message] = fake_twilio.messages
    assert message["content_variables"]["2"] == "Monday 6 May 2030, 11:30"


def test_a_messaging_service_sends_instead_of_the_from_number(service, settings, fake_twilio):
    settings.QUEUE_ENABLED = False
    settings.TWILIO_MESSAGING_SERVICE_SID = "MG" + "1" * 32
    settings.TWILIO_SMS_FROM = ""

    delivery = service.send_sms(NUMBER, text="hi")

    [message] = fake_twilio.messages
    assert delivery.status == Delivery.Status.SENT
    assert (message["messaging_service_sid"], message["from"]) == ("MG" + "1" * 32, "")


def test_a_mapping_removed_before_a_scheduled_send_fails_at_once(service, settings, fake_twilio):
    settings.QUEUE_ENABLED = False
    reminder = service.send_appointment_reminder(
        NUMBER, appointment=VISIT, lead="day_before", channel="whatsapp", delay=timedelta(hours=1)
    )
    settings.NOTIFICATIONS_WHATSAPP_TEMPLATES = {}
    Delivery.objects.filter(pk=reminder.pk).update(send_at=timezone.now())

    outbox.dispatch_due()

    reminder.refresh_from_db()
    assert (
        reminder.status == Delivery.Status.FAILED
        and "NOTIFICATIONS_WHATSAPP_TEMPLATES" in reminder.last_error
    )
    job = FailedJob.objects.get()
    assert job.exception_class == "notifications.exceptions.PermanentDeliveryError"
    assert fake_twilio.requests_seen == 0

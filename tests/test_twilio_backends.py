"""The local SMS and WhatsApp backends, for development (console) and host projects' tests (locmem)."""

import pytest

from notifications import twilio_backends
from notifications.models import Delivery
from notifications.services import NotificationsService

pytestmark = pytest.mark.django_db(transaction=True)  # the send runs on commit

NUMBER = "+33612345678"


@pytest.fixture
def local(settings):
    """A project with no Twilio account at all."""
    settings.QUEUE_ENABLED = False
    settings.TWILIO_ACCOUNT_SID = settings.TWILIO_AUTH_TOKEN = ""
    settings.TWILIO_SMS_FROM = settings.TWILIO_WHATSAPP_FROM = ""
    twilio_backends.outbox.clear()
    yield settings
    twilio_backends.outbox.clear()


def test_locmem_keeps_sms_and_whatsapp_for_a_host_projects_tests(local):
    local.NOTIFICATIONS_TWILIO_BACKEND = "notifications.twilio_backends.LocmemBackend"
    service = NotificationsService()

    sms = service.send_sms(NUMBER, text="Your code is 1234")
    whatsapp = service.send_appointment_confirmation(
        NUMBER, appointment={"id": 1, "starts_at": sms.created_at, "with_name": "Dr Roux"}, channel="whatsapp"
    )

    first, second = twilio_backends.outbox
    assert (first["to"], first["body"]) == (NUMBER, "Your code is 1234")
    assert second["to"] == "whatsapp:" + NUMBER and second["variables"]["1"] == "Dr Roux"
    assert "body" not in second and second["content_sid"].startswith("HX")
    assert [sms.status, whatsapp.status] == [Delivery.Status.SENT] * 2
    assert Delivery.objects.get(pk=sms.pk).provider_message_id == first["sid"]


def test_console_prints_each_message(local, capsys):
    local.NOTIFICATIONS_TWILIO_BACKEND = "notifications.twilio_backends.ConsoleBackend"

    delivery = NotificationsService().send_sms(NUMBER, text="Hello from the console")

    printed = capsys.readouterr().out
    assert f"to: {NUMBER}" in printed and "Hello from the console" in printed
    assert delivery.provider_message_id in printed and delivery.status == Delivery.Status.SENT


def test_the_twilio_backend_still_needs_an_account(local):
    from notifications.exceptions import ChannelNotConfigured

    with pytest.raises(ChannelNotConfigured, match="TWILIO_ACCOUNT_SID"):
        NotificationsService().send_sms(NUMBER, text="hi")

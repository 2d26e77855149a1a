import io
import smtplib
import threading

import pytest
import requests
from anymail.exceptions import (
    AnymailAPIError,
    AnymailInvalidAddress,
    AnymailRecipientsRefused,
    AnymailRequestsAPIError,
)
from twilio.base.exceptions import TwilioRestException

from notifications.exceptions import PermanentDeliveryError, TransientDeliveryError
from notifications.provider_errors import email_error, smtp_error, twilio_error
from notifications.twilio_backends import TwilioBackend
from tests.factories import new_delivery


def rest_error(status, code):
    return TwilioRestException(status, "https://api.twilio.com/x", msg="refused", code=code)


@pytest.mark.parametrize("code", [21211, 21610, 21614, 63016])
def test_known_twilio_dead_ends_are_permanent(code):
    error = twilio_error(rest_error(400, code))
    assert isinstance(error, PermanentDeliveryError)
    assert (error.provider, error.code, error.status) == ("twilio", code, 400)


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (429, None), (500, 20500), (503, None)])
def test_twilio_rate_limits_and_server_errors_are_transient(status, code):
    assert isinstance(twilio_error(rest_error(status, code)), TransientDeliveryError)


def test_other_twilio_client_errors_are_permanent():
    assert isinstance(twilio_error(rest_error(401, 20003)), PermanentDeliveryError)


def test_twilio_retry_after_sets_the_retry_delay():
    error = twilio_error(rest_error(429, 20429), {"Retry-After": "7"})
    assert error.delay == 7000


def test_missing_or_odd_retry_after_leaves_the_backoff_alone():
    assert twilio_error(rest_error(429, 20429), {}).delay is None
    assert (
        twilio_error(rest_error(429, 20429), {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}).delay is None
    )


def test_twilio_network_errors_are_transient():
    error = twilio_error(requests.ConnectionError("refused"))
    assert isinstance(error, TransientDeliveryError)
    assert "Could not reach Twilio" in str(error)


@pytest.mark.parametrize(
    ("error", "permanent", "code"),
    [
        (smtplib.SMTPDataError(550, b"5.1.1 Mailbox unavailable"), True, 550),
        (smtplib.SMTPRecipientsRefused({"a@b.c": (553, b"no such user")}), True, 553),
        (smtplib.SMTPSenderRefused(421, b"busy", "x@y.z"), False, 421),
        (smtplib.SMTPDataError(451, b"4.3.0 Try again"), False, 451),
        (smtplib.SMTPServerDisconnected("gone"), False, None),
        (ConnectionRefusedError(111, "refused"), False, None),
        (TimeoutError("timed out"), False, None),
    ],
)
def test_smtp_errors(error, permanent, code):
    result = smtp_error(error)
    assert isinstance(result, PermanentDeliveryError) is permanent
    assert isinstance(result, TransientDeliveryError) is not permanent
    assert result.code == code


@pytest.fixture
def sms_payload(db):
    delivery = new_delivery("+33612345678")
    return {
        "delivery_id": delivery.pk,
        "channel": "sms",
        "recipient": "+33612345678",
        "template": "plain",
        "context": {"text": "hi"},
        "language": "en",
    }


def test_a_twilio_answer_is_translated_and_keeps_the_sdk_error_as_its_cause(fake_twilio, sms_payload):
    from twilio.base.exceptions import TwilioRestException

    from notifications.channels import get_channel

    fake_twilio.fail_next(503, 20503, "Service unavailable")
    with pytest.raises(TransientDeliveryError, match="Service unavailable") as raised:
        get_channel("sms").deliver(sms_payload)

    assert isinstance(raised.value.__cause__, TwilioRestException)
    assert raised.value.code == 20503


def test_a_network_error_is_transient_and_keeps_its_stack(settings, sms_payload):
    from notifications.channels import get_channel

    settings.TWILIO_API_BASE_URL = "http://127.0.0.1:1"
    with pytest.raises(TransientDeliveryError, match="Could not reach Twilio") as raised:
        get_channel("sms").deliver(sms_payload)

    assert isinstance(raised.value.__cause__, requests.ConnectionError)


@pytest.fixture
def proxy_environment(monkeypatch):
    """A proxy that refuses connections, set in the environment before the next Twilio client is made."""
    from notifications.channels import twilio

    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    monkeypatch.setattr(twilio, "_local", threading.local())
    return monkeypatch


MESSAGE = {"to": "+33612345678", "from_": "+15005550006", "body": "hi"}


def test_a_proxy_in_the_environment_is_used_for_twilio(fake_twilio, proxy_environment):
    with pytest.raises(requests.ConnectionError):
        TwilioBackend().send(MESSAGE)

    assert fake_twilio.requests_seen == 0


def test_no_proxy_in_the_environment_is_honoured_for_twilio(fake_twilio, proxy_environment):
    proxy_environment.setenv("NO_PROXY", "127.0.0.1")

    assert TwilioBackend().send(MESSAGE).startswith("SM")
    assert fake_twilio.requests_seen == 1


def esp_api_error(status):
    """Anymail's error for an ESP's HTTP answer, which it keeps on the exception."""
    response = requests.Response()
    response.status_code, response.reason = status, "Refused"
    response.raw = io.BytesIO(b'{"message": "no"}')
    return AnymailAPIError("The ESP refused", status_code=status, response=response)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (AnymailRecipientsRefused("all refused"), PermanentDeliveryError),
        (AnymailInvalidAddress("not an address"), PermanentDeliveryError),
        (esp_api_error(400), PermanentDeliveryError),
        (esp_api_error(429), TransientDeliveryError),
        (esp_api_error(503), TransientDeliveryError),
        (AnymailRequestsAPIError("connection reset"), TransientDeliveryError),
    ],
)
def test_anymail_errors_are_permanent_or_transient(error, kind):
    assert type(email_error(error)) is kind

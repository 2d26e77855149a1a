"""The Twilio client shared by the SMS and WhatsApp channels, and the meaning of Twilio's errors."""

import threading

import phonenumbers
import requests
from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from ..exceptions import (
    ChannelNotConfigured,
    InvalidRecipient,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from ..rendering import find_template, render_text
from .base import BaseChannel

# Twilio error codes that no retry can fix (https://www.twilio.com/docs/api/errors).
PERMANENT_CODES = {
    21211,  # invalid 'To' number
    21212,  # invalid 'From' number
    21408,  # permission to send to this region not enabled
    21610,  # recipient unsubscribed (replied STOP)
    21612,  # cannot route to this number
    21614,  # 'To' is not a mobile number
    21617,  # body too long
    63003,  # WhatsApp: channel could not find the recipient
    63016,  # WhatsApp: outside the 24-hour customer service window
}
RATE_LIMIT_CODES = {20429}
MAX_BODY_CHARS = 1600

_local = threading.local()


class HeaderKeepingHttpClient(TwilioHttpClient):
    """Keeps the last response's headers, to honour Retry-After."""

    last_headers = {}

    def request(self, *args, **kwargs):
        response = super().request(*args, **kwargs)
        self.last_headers = response.headers or {}
        return response


def twilio_client():
    """One client per thread: requests sessions are not thread-safe, and reuse keeps connections warm."""
    key = (settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_API_BASE_URL)
    if getattr(_local, "key", None) != key:
        client = Client(key[0], key[1], http_client=HeaderKeepingHttpClient(timeout=settings.TWILIO_TIMEOUT))
        client.api.base_url = settings.TWILIO_API_BASE_URL
        _local.key, _local.client = key, client
    return _local.client


def send_message(to, from_, body):
    client = twilio_client()
    try:
        return client.messages.create(to=to, from_=from_, body=body).sid
    except TwilioRestException as error:
        raise classify_error(error, client.http_client.last_headers) from error
    except (requests.RequestException, TwilioException) as error:
        raise TransientDeliveryError(f"Could not reach Twilio: {error}", provider="twilio") from error


def classify_error(error, headers):
    """Rate limits and server errors are transient; known dead ends and other 4xx are permanent."""
    text = f"Twilio refused the message: {error.msg}"
    if error.status == 429 or error.code in RATE_LIMIT_CODES or error.status >= 500:
        return TransientDeliveryError(
            text, provider="twilio", code=error.code, status=error.status, delay=retry_after_ms(headers)
        )
    return PermanentDeliveryError(text, provider="twilio", code=error.code, status=error.status)


def retry_after_ms(headers):
    try:
        return int(float(headers.get("Retry-After"))) * 1000
    except (TypeError, ValueError):
        return None


def clean_phone_number(value):
    """Return the number in E.164 form (+33612345678), or raise InvalidRecipient."""
    text = str(value or "").strip()
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise InvalidRecipient(
            f"{value!r} is not a valid phone number in international form, such as +33612345678."
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class TwilioChannel(BaseChannel):
    """A text message sent through Twilio from the number in ``from_setting``."""

    from_setting = ""
    address_prefix = ""

    def check_configured(self):
        for setting in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", self.from_setting):
            if not getattr(settings, setting, ""):
                raise ChannelNotConfigured(self.name, setting)

    def clean_recipient(self, recipient):
        return clean_phone_number(recipient)

    def template_pattern(self, template):
        return f"notifications/{self.name}/{template}/{{language}}.txt"

    def check_template(self, template, language):
        super().check_template(template, language)
        find_template(self.template_pattern(template), language)

    def render(self, payload):
        pattern = self.template_pattern(payload["template"])
        body = render_text(pattern, payload["context"], payload["language"]).strip()
        if len(body) > MAX_BODY_CHARS:
            raise PermanentDeliveryError(
                f"Message body is {len(body)} characters; the limit is {MAX_BODY_CHARS}."
            )
        return body

    def send(self, delivery, payload):
        self.check_configured()
        sender = self.address_prefix + getattr(settings, self.from_setting).removeprefix(self.address_prefix)
        return send_message(self.address_prefix + payload["recipient"], sender, self.render(payload))

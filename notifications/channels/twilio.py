"""The Twilio client shared by the SMS and WhatsApp channels."""

import threading

import phonenumbers
from django.conf import settings
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from ..exceptions import ChannelNotConfigured, InvalidRecipient, PermanentDeliveryError
from ..provider_errors import cause_to_chain, twilio_error
from ..rendering import find_template, render_text
from .base import BaseChannel

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
    except Exception as error:
        raise twilio_error(error, client.http_client.last_headers) from cause_to_chain(error)


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

    def send(self, payload):
        self.check_configured()
        sender = self.address_prefix + getattr(settings, self.from_setting).removeprefix(self.address_prefix)
        return send_message(self.address_prefix + payload["recipient"], sender, self.render(payload))

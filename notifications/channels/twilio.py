"""The Twilio client shared by the SMS and WhatsApp channels."""

import os
import threading

import phonenumbers
import requests
from django.conf import settings
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from ..exceptions import ChannelNotConfigured, InvalidRecipient, PermanentDeliveryError
from ..provider_errors import cause_to_chain, twilio_error
from ..rendering import find_template, render_text
from .base import BaseChannel

MAX_BODY_CHARS = 1600

_local = threading.local()


class HttpClient(TwilioHttpClient):
    """The SDK's client, reading the proxy settings once, and keeping the last response's headers to
    honour Retry-After.

    requests looks up HTTP(S)_PROXY, NO_PROXY and REQUESTS_CA_BUNDLE in the environment on every
    request, walking all of os.environ; that cost more CPU than the rest of the request. Here they are
    read when the client is made, for the API's address.
    """

    last_headers = {}

    def __init__(self, base_url, **options):
        super().__init__(proxy=requests.utils.get_environ_proxies(base_url), **options)
        self.session.trust_env = False
        self.session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True

    def request(self, *args, **kwargs):
        response = super().request(*args, **kwargs)
        self.last_headers = response.headers or {}
        return response


def twilio_client():
    """One client per thread: requests sessions are not thread-safe, and reuse keeps connections warm."""
    key = (settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_API_BASE_URL)
    if getattr(_local, "key", None) != key:
        http_client = HttpClient(settings.TWILIO_API_BASE_URL, timeout=settings.TWILIO_TIMEOUT)
        client = Client(key[0], key[1], http_client=http_client)
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

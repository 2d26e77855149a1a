"""The Twilio client shared by the SMS and WhatsApp channels."""

import threading
from datetime import datetime, timedelta
from typing import Any

import phonenumbers
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from ..conf import setting
from ..exceptions import (
    ChannelNotConfigured,
    DeliveryError,
    InvalidNotification,
    InvalidRecipient,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from ..payload import Payload
from ..provider_errors import NO_ANSWER, twilio_error
from ..rendering import find_template, render_text
from .base import BaseChannel, provider_timeout

MAX_BODY_CHARS = 1600

_local = threading.local()


class HttpClient(TwilioHttpClient):
    """The SDK's client, keeping the last response's headers to honour Retry-After."""

    last_headers: dict[str, str] = {}

    def request(self, *args: Any, **kwargs: Any) -> Response:
        response = super().request(*args, **kwargs)
        self.last_headers = response.headers or {}
        return response


def twilio_client() -> Client:
    """One client per thread: requests sessions are not thread-safe, and reuse keeps connections warm."""
    key = (
        setting("TWILIO_ACCOUNT_SID"),
        setting("TWILIO_AUTH_TOKEN"),
        setting("TWILIO_API_BASE_URL"),
        provider_timeout(setting("TWILIO_TIMEOUT")),
    )
    if getattr(_local, "key", None) != key:
        client = Client(key[0], key[1], http_client=HttpClient(timeout=key[3]))
        client.api.base_url = key[2]
        _local.key, _local.client = key, client
    return _local.client


def send_message(to: str, from_: str, body: str) -> str:
    """Send one message through Twilio and return its SID; Twilio's own exceptions propagate."""
    return twilio_client().messages.create(to=to, from_=from_, body=body).sid


def find_message(to: str, from_: str, body: str, since: datetime) -> str | None:
    """The SID of a message Twilio accepted from ``from_`` to ``to`` with this body since then."""
    for message in twilio_client().messages.list(to=to, from_=from_, limit=50):
        if message.body == body and message.date_created is not None and message.date_created >= since:
            return message.sid
    return None


def too_long(body: str) -> str:
    return f"The message body is {len(body)} characters once rendered; the limit is {MAX_BODY_CHARS}."


def clean_phone_number(value: Any) -> str:
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
    provider = "twilio"

    def check_configured(self) -> None:
        for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", self.from_setting):
            if not setting(name):
                raise ChannelNotConfigured(self.name, name)

    def clean_recipient(self, recipient: Any) -> str:
        return clean_phone_number(recipient)

    def template_pattern(self, template: str) -> str:
        return f"notifications/{self.name}/{template}/{{language}}.txt"

    def check_template(self, template: str, language: str) -> None:
        super().check_template(template, language)
        find_template(self.template_pattern(template), language)

    def check_message(self, payload: Payload) -> None:
        """The body is rendered at call time too, so that one too long is refused then."""
        body = self.render_body(payload)
        if len(body) > MAX_BODY_CHARS:
            raise InvalidNotification(too_long(body))

    def render_body(self, payload: Payload) -> str:
        pattern = self.template_pattern(payload["template"])
        return render_text(pattern, payload["context"], payload["language"]).strip()

    def render(self, payload: Payload) -> str:
        body = self.render_body(payload)
        if len(body) > MAX_BODY_CHARS:
            raise PermanentDeliveryError(too_long(body))
        return body

    def send(self, payload: Payload) -> str:
        self.check_configured()
        sender = self.address_prefix + setting(self.from_setting).removeprefix(self.address_prefix)
        to, body = self.address_prefix + payload["recipient"], self.render(payload)
        accepted = self.accepted_earlier(payload["delivery_id"], to, sender, body)
        return accepted or send_message(to, sender, body)

    def accepted_earlier(self, delivery_id: int, to: str, sender: str, body: str) -> str | None:
        """After an attempt Twilio did not answer, the SID of the message it accepted all the same."""
        from ..models import Delivery

        unanswered = Delivery.objects.filter(pk=delivery_id, error_code=NO_ANSWER)
        created_at = unanswered.values_list("created_at", flat=True).first()
        if created_at is None:
            return None
        try:
            return find_message(to, sender, body, since=created_at - timedelta(minutes=1))
        except Exception as error:
            raise TransientDeliveryError(
                f"Could not ask Twilio whether an earlier attempt was accepted: {error!r}",
                provider="twilio",
                code=NO_ANSWER,
            ) from error

    def provider_error(self, error: Exception) -> DeliveryError:
        return twilio_error(error, twilio_client().http_client.last_headers)

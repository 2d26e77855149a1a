"""The Twilio client shared by the SMS and WhatsApp channels."""

import threading
from datetime import timedelta
from functools import cache
from typing import Any

import phonenumbers
from django.urls import reverse
from django.utils.module_loading import import_string
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from ..conf import setting
from ..exceptions import (
    ChannelNotConfigured,
    DeliveryError,
    DeliveryOutcomeUnknown,
    InvalidNotification,
    InvalidRecipient,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from ..payload import Payload
from ..provider_errors import NO_ANSWER, TWILIO_UNSUBSCRIBED, twilio_error
from ..rendering import find_template, render_text
from ..twilio_backends import BaseTwilioBackend
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


@cache
def backend_instance(path: str) -> BaseTwilioBackend:
    return import_string(path)()


def twilio_backend() -> BaseTwilioBackend:
    """The NOTIFICATIONS_TWILIO_BACKEND: Twilio itself, or a local one (see twilio_backends)."""
    return backend_instance(setting("NOTIFICATIONS_TWILIO_BACKEND"))


def status_callback_url(delivery_id: int) -> str | None:
    """Where Twilio reports on the message: under NOTIFICATIONS_PUBLIC_URL, the delivery's own URL."""
    public_url = setting("NOTIFICATIONS_PUBLIC_URL")
    if not public_url:
        return None
    return public_url.rstrip("/") + reverse("twilio_status", kwargs={"delivery_id": delivery_id})


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
        if not twilio_backend().needs_credentials:
            return  # a local backend (console, locmem) needs no account and no sender
        needed = ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"]
        if not setting("TWILIO_MESSAGING_SERVICE_SID"):
            needed.append(self.from_setting)
        for name in needed:
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
        message = self.message(payload)
        to, sender, template = message["to"], message.get("from_"), "content_sid" in message
        accepted = self.accepted_earlier(
            payload["delivery_id"], to, sender, message["body"], template=template
        )
        if accepted:
            return accepted
        if template:
            del message["body"]  # the template's text is Twilio's to render
        try:
            return twilio_backend().send(message)
        except TwilioRestException as error:
            if error.code == TWILIO_UNSUBSCRIBED:
                from ..suppression import suppress

                suppress(self.name, payload["recipient"], "stop", f"Twilio error {error.code}: {error.msg}")
            raise

    def message(self, payload: Payload) -> dict[str, Any]:
        """The keyword arguments of Twilio's ``messages.create`` for this delivery."""
        message: dict[str, Any] = {"to": self.address_prefix + payload["recipient"]}
        messaging_service = setting("TWILIO_MESSAGING_SERVICE_SID")
        if messaging_service:
            message["messaging_service_sid"] = messaging_service
        else:
            sender = setting(self.from_setting).removeprefix(self.address_prefix)
            message["from_"] = self.address_prefix + sender
        message["body"] = self.render(payload)
        message.update(self.content(payload))
        callback = status_callback_url(payload["delivery_id"])
        if callback:
            message["status_callback"] = callback
        return message

    def content(self, payload: Payload) -> dict[str, str]:
        """``content_sid`` and ``content_variables`` when the message is a Content template."""
        return {}

    def accepted_earlier(
        self, delivery_id: int, to: str, sender: str | None, body: str, *, template: bool = False
    ) -> str | None:
        """After an attempt Twilio did not answer, the SID of the message it accepted all the same.

        Found by its text. A Content template's text is Twilio's to render, so it cannot be: unless a
        status callback settled it (receipts.record_accepted), it is not sent again by itself.
        """
        from ..models import Delivery

        unanswered = Delivery.objects.filter(pk=delivery_id, error_code=NO_ANSWER)
        created_at = unanswered.values_list("created_at", flat=True).first()
        if created_at is None:
            return None
        try:
            found = twilio_backend().find(to, sender, body, since=created_at - timedelta(minutes=1))
        except Exception as error:
            raise TransientDeliveryError(
                f"Could not ask Twilio whether an earlier attempt was accepted: {error!r}",
                provider="twilio",
                code=NO_ANSWER,
            ) from error
        if found is None and template:
            raise DeliveryOutcomeUnknown(
                f"Twilio did not answer an earlier attempt at delivery {delivery_id} in time, and a "
                "Content template message cannot be looked up by its text: it may have been "
                "delivered. Not sent again automatically: retry it from failed jobs to send it anyway."
            )
        return found

    def provider_error(self, error: Exception) -> DeliveryError:
        return twilio_error(error, twilio_client().http_client.last_headers)

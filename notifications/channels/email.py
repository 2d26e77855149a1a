"""Email through Django's email framework, so any EMAIL_BACKEND (SMTP, anymail, ...) works."""

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.message import make_msgid
from django.core.mail.utils import DNS_NAME
from django.core.validators import validate_email

from ..exceptions import DeliveryError, InvalidRecipient
from ..payload import Payload
from ..provider_errors import email_error
from ..rendering import find_template, render_html, render_text
from ..unsubscribe import list_unsubscribe_headers
from .base import BaseChannel, provider_timeout

#: When EMAIL_TIMEOUT is not set (Django would wait on the socket without limit).
DEFAULT_SMTP_TIMEOUT_S = 30.0

PARTS = {
    "subject": "notifications/email/{template}/{{language}}/subject.txt",
    "text": "notifications/email/{template}/{{language}}/body.txt",
    "html": "notifications/email/{template}/{{language}}/body.html",
}
#: Added to the text body of an email that carries an unsubscribe link.
UNSUBSCRIBE_FOOTER = "notifications/email/unsubscribe/{language}.txt"


class EmailChannel(BaseChannel):
    """Each email type is three templates: subject, text body and HTML body."""

    label = "Email"
    provider = "email"

    def clean_recipient(self, recipient: Any) -> str:
        address = str(recipient or "").strip()
        try:
            validate_email(address)
        except ValidationError:
            raise InvalidRecipient(f"{recipient!r} is not a valid email address.") from None
        return address

    def check_template(self, template: str, language: str) -> None:
        super().check_template(template, language)
        for part, pattern in PARTS.items():
            find_template(pattern.format(template=template), language, html=part == "html")

    def send(self, payload: Payload) -> str:
        message = build_message(payload)
        timeout = provider_timeout(settings.EMAIL_TIMEOUT or DEFAULT_SMTP_TIMEOUT_S)
        message.connection = get_connection(timeout=timeout)
        message.send()
        return esp_message_id(message) or message.extra_headers["Message-ID"]

    def provider_error(self, error: Exception) -> DeliveryError:
        return email_error(error)


def esp_message_id(message: EmailMultiAlternatives) -> str:
    """The ESP's own id of the message, when the backend is one of django-anymail's."""
    status = getattr(message, "anymail_status", None)
    message_id = getattr(status, "message_id", None)
    return "" if message_id is None else str(message_id)


def build_message(payload: Payload) -> EmailMultiAlternatives:
    template, context, language = payload["template"], payload["context"], payload["language"]
    subject = render_text(PARTS["subject"].format(template=template), context, language)
    body = render_text(PARTS["text"].format(template=template), context, language)
    headers = {"Message-ID": make_msgid(domain=DNS_NAME)}
    if context.get("unsubscribe_url"):
        # The HTML layout shows the link itself (notifications/email/base.html).
        body += render_text(UNSUBSCRIBE_FOOTER, context, language)
        headers.update(list_unsubscribe_headers(context["unsubscribe_url"]))
    message = EmailMultiAlternatives(
        subject=" ".join(subject.split()),
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[payload["recipient"]],
        headers=headers,
    )
    # For anymail's ESP backends: the ESP hands it back in its tracking events (see tracking.py).
    message.metadata = {"delivery_id": str(payload["delivery_id"])}  # type: ignore[attr-defined]
    message.attach_alternative(
        render_html(PARTS["html"].format(template=template), context, language), "text/html"
    )
    return message

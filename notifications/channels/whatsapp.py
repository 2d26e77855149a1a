"""WhatsApp through Twilio: the same API with ``whatsapp:`` in front of both numbers.

WhatsApp accepts free-form text only inside the 24-hour window opened by the recipient's last
message. Everything else, business-initiated, must be an approved template: each notification
template other than ``plain`` is sent as a Twilio Content template (``ContentSid`` and
``ContentVariables``) from NOTIFICATIONS_WHATSAPP_TEMPLATES::

    NOTIFICATIONS_WHATSAPP_TEMPLATES = {
        "appointment_reminder_day_before": {
            "content_sids": {"en": "HX...", "fr": "HX..."},
            # {{1}}, {{2}}, ... in this order; without "variables", the context's own names.
            "variables": ["with_name", "starts_at", "location"],
        },
    }

``plain`` (``send_whatsapp``) stays free-form ``Body``: replies inside the session window.

A variable holding a date and time (an appointment's ``starts_at``) reads as the SMS and email
templates write it, in the message's language and the site's time zone ("Monday 6 May 2030, 09:30"),
not as the ISO text the message carries.
"""

import json
from typing import Any

from django.utils import formats, timezone, translation
from django.utils.dateparse import parse_datetime

from ..conf import setting
from ..exceptions import PermanentDeliveryError, UnknownTemplate
from ..payload import Payload
from .twilio import TwilioChannel

FREE_FORM_TEMPLATES = {"plain"}


class WhatsAppChannel(TwilioChannel):
    check_id = "notifications.W002"
    label = "WhatsApp"
    from_setting = "TWILIO_WHATSAPP_FROM"
    address_prefix = "whatsapp:"

    def check_template(self, template: str, language: str) -> None:
        super().check_template(template, language)
        if template not in FREE_FORM_TEMPLATES:
            content_sid(template, language)

    def content(self, payload: Payload) -> dict[str, str]:
        template, language = payload["template"], payload["language"]
        if template in FREE_FORM_TEMPLATES:
            return {}
        try:
            variables = content_variables(template_entry(template), payload["context"], language)
            sid = content_sid(template, language)
        except UnknownTemplate as error:  # the mapping went away after the call: no retry brings it back
            raise PermanentDeliveryError(str(error)) from error
        return {"content_sid": sid, "content_variables": json.dumps(variables, ensure_ascii=False)}


def template_entry(template: str) -> dict[str, Any]:
    entry = setting("NOTIFICATIONS_WHATSAPP_TEMPLATES").get(template)
    if not isinstance(entry, dict):
        raise UnknownTemplate(
            f"The WhatsApp template {template!r} has no Twilio Content template: business-initiated "
            f"WhatsApp messages need one. Add NOTIFICATIONS_WHATSAPP_TEMPLATES[{template!r}] = "
            '{"content_sids": {"<language>": "HX..."}, "variables": [...]}.'
        )
    return entry


def content_sid(template: str, language: str) -> str:
    """The ContentSid of a template in a language, or UnknownTemplate saying what to configure."""
    sids = template_entry(template).get("content_sids") or {}
    sid = sids.get(language)
    if not sid:
        known = ", ".join(sorted(sids)) or "none"
        raise UnknownTemplate(
            f"The WhatsApp template {template!r} has no Twilio Content template in {language!r} "
            f"(languages configured: {known}). Add it to "
            f'NOTIFICATIONS_WHATSAPP_TEMPLATES[{template!r}]["content_sids"].'
        )
    return str(sid)


def content_variables(entry: dict[str, Any], context: dict[str, Any], language: str) -> dict[str, str]:
    """{"1": ..., "2": ...} from the entry's ``variables``; else the context under its own names."""
    names = entry.get("variables")
    if names is None:
        return {str(name): variable_text(value, language) for name, value in context.items()}
    values = [context.get(name, "") for name in names]
    return {str(index): variable_text(value, language) for index, value in enumerate(values, start=1)}


#: How a date and time reads in a variable: the format of the SMS and email templates.
DATETIME_FORMAT = "l j F Y, H:i"


def variable_text(value: Any, language: str) -> str:
    """A variable as the recipient reads it: an aware ISO date and time in words, anything else as is."""
    if isinstance(value, str):
        try:
            moment = parse_datetime(value)
        except ValueError:
            moment = None
        if moment is not None and timezone.is_aware(moment):
            with translation.override(language):
                return formats.date_format(timezone.localtime(moment), DATETIME_FORMAT)
    return str(value)

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
"""

import json
from typing import Any

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
            variables = content_variables(template_entry(template), payload["context"])
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


def content_variables(entry: dict[str, Any], context: dict[str, Any]) -> dict[str, str]:
    """{"1": ..., "2": ...} from the entry's ``variables``; else the context under its own names."""
    names = entry.get("variables")
    if names is None:
        return {str(name): str(value) for name, value in context.items()}
    return {str(index): str(context.get(name, "")) for index, name in enumerate(names, start=1)}

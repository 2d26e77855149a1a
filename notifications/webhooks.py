"""Twilio's webhooks: status callbacks for the messages sent, and the messages people send back.

Every request must carry a valid ``X-Twilio-Signature``: Twilio signs the URL it called and the
POST parameters with the account's auth token. The URL checked is NOTIFICATIONS_PUBLIC_URL plus the
path, when set (behind a proxy the site does not see the URL Twilio called); otherwise the request's
own, which Django builds from the Host header and, behind a proxy that terminates TLS, from
SECURE_PROXY_SSL_HEADER. Anything else gets 403 and changes nothing.

Status callbacks have the delivery's id in their URL (see channels.twilio.status_callback_url), so
that one arriving before the send call's answer is recorded still finds its delivery.
"""

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator

from . import receipts, suppression
from .channels.twilio import clean_phone_number
from .conf import setting
from .exceptions import InvalidRecipient
from .provider_errors import TWILIO_UNSUBSCRIBED, receipt_is_retryable

logger = logging.getLogger("notifications.webhooks")

ACCEPTED = {"accepted", "queued", "sending", "sent"}
DELIVERED = {"delivered", "read"}
UNDELIVERED = {"undelivered", "failed"}
# Twilio's default opt-out and opt-in keywords (Advanced Opt-Out), which it also acts on itself.
STOP_WORDS = {"STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"}
START_WORDS = {"START", "YES", "UNSTOP"}
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def signed_url(request: HttpRequest) -> str:
    public_url = setting("NOTIFICATIONS_PUBLIC_URL")
    if public_url:
        return public_url.rstrip("/") + request.get_full_path()
    return request.build_absolute_uri()


def has_valid_signature(request: HttpRequest) -> bool:
    signature = request.headers.get("X-Twilio-Signature", "")
    token = setting("TWILIO_AUTH_TOKEN")
    if not signature or not token:
        return False
    return RequestValidator(token).validate(signed_url(request), request.POST.dict(), signature)


def twilio_webhook(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """POST only, no CSRF token (Twilio has none), and 403 unless Twilio signed it."""

    @csrf_exempt
    @require_POST
    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not has_valid_signature(request):
            logger.warning("Refused a Twilio webhook with a missing or wrong signature: %s", request.path)
            return HttpResponseForbidden("Invalid X-Twilio-Signature.")
        return view(request, *args, **kwargs)

    return checked


@twilio_webhook
def twilio_status(request: HttpRequest, delivery_id: int) -> HttpResponse:
    """A message's status changed: record delivered, or undelivered (a retry, or a failed job)."""
    status = request.POST.get("MessageStatus", "")
    sid = request.POST.get("MessageSid", "")
    code = request.POST.get("ErrorCode", "")
    if status in ACCEPTED:
        receipts.record_accepted(delivery_id, sid)
    elif status in DELIVERED:
        receipts.record_delivered(delivery_id, sid)
    elif status in UNDELIVERED:
        record_undelivered(request, delivery_id, sid, status, code)
    return HttpResponse(status=204)


def record_undelivered(request: HttpRequest, delivery_id: int, sid: str, status: str, code: str) -> None:
    description = f"Twilio reported the message {status}"
    if code:
        description += f" (error {code}: https://www.twilio.com/docs/api/errors/{code})"
    outcome = receipts.record_undelivered(
        delivery_id,
        sid,
        provider="twilio",
        code=code,
        description=description,
        retryable=receipt_is_retryable(code),
    )
    if outcome == receipts.Outcome.UNDELIVERED and code == str(TWILIO_UNSUBSCRIBED):
        channel, number = sender(request.POST.get("To", ""))
        if number:
            suppression.suppress(channel, number, suppression.Reason.STOP, description)


def sender(address: str) -> tuple[str, str]:
    """(channel, E.164 number) of a Twilio address such as ``whatsapp:+33612345678``; "" if not one."""
    channel = "whatsapp" if address.startswith("whatsapp:") else "sms"
    try:
        return channel, clean_phone_number(address.removeprefix("whatsapp:"))
    except InvalidRecipient:
        return channel, ""


@twilio_webhook
def twilio_inbound(request: HttpRequest) -> HttpResponse:
    """A message from someone: STOP puts them on the suppression list of that channel, START lifts it."""
    channel, number = sender(request.POST.get("From", ""))
    word = " ".join(request.POST.get("Body", "").split()).upper()
    if number and word in STOP_WORDS:
        suppression.suppress(channel, number, suppression.Reason.STOP, f"Replied {word}.")
    elif number and word in START_WORDS:
        suppression.lift(channel, number, [suppression.Reason.STOP])
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")

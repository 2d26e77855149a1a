"""What each provider error means: worth retrying (transient) or not (permanent).

Every channel turns the errors of its provider into PermanentDeliveryError or
TransientDeliveryError here, so the retry policy is readable in one place.
"""

import smtplib
import socket
from collections.abc import Mapping

import requests
from anymail.exceptions import (
    AnymailAPIError,
    AnymailError,
    AnymailInvalidAddress,
    AnymailRecipientsRefused,
    AnymailSerializationError,
    AnymailUnsupportedFeature,
)
from django.core.exceptions import ImproperlyConfigured
from twilio.base.exceptions import TwilioException, TwilioRestException

from .conf import setting
from .exceptions import DeliveryError, PermanentDeliveryError, TransientDeliveryError

# Twilio error codes that no retry can fix (https://www.twilio.com/docs/api/errors).
TWILIO_PERMANENT_CODES = {
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
TWILIO_RATE_LIMIT_CODES = {20429}
#: Codes of an ``undelivered`` or ``failed`` status callback that a later attempt may get past; every
#: other code in a receipt is permanent (30005 unknown number, 30006 landline, 30007 carrier filter...).
TWILIO_RETRYABLE_RECEIPT_CODES = {
    30001,  # queue overflow
    30003,  # unreachable destination handset (off, out of coverage)
    30008,  # unknown error
    30009,  # missing segment
    30017,  # carrier network congestion
    63018,  # WhatsApp: rate limit of the sender exceeded
}
#: The recipient replied STOP: the number goes on the suppression list.
TWILIO_UNSUBSCRIBED = 21610
#: Our code for a request Twilio did not answer in time: it may have accepted the message.
NO_ANSWER = "no-answer"


def twilio_error(error: Exception, headers: Mapping[str, str] | None = None) -> DeliveryError:
    """Rate limits, server errors and network trouble are transient; known dead ends and other 4xx are not."""
    if isinstance(error, requests.ReadTimeout):
        return TransientDeliveryError(
            f"Twilio did not answer in time ({error}); it may have accepted the message, so the next "
            "attempt looks for it at Twilio before sending again.",
            provider="twilio",
            code=NO_ANSWER,
            # Long enough for Twilio to have finished with the request, so the lookup can find it.
            delay=setting("TWILIO_LOOKUP_DELAY_MS"),
        )
    if not isinstance(error, TwilioRestException):
        if isinstance(error, (requests.RequestException, TwilioException, OSError)):
            return TransientDeliveryError(f"Could not reach Twilio: {error}", provider="twilio")
        return TransientDeliveryError(f"Twilio client error: {error!r}", provider="twilio", expected=False)
    text = f"Twilio refused the message: {error.msg}"
    if error.code in TWILIO_PERMANENT_CODES:
        return PermanentDeliveryError(text, provider="twilio", code=error.code, status=error.status)
    if error.status == 429 or error.code in TWILIO_RATE_LIMIT_CODES or error.status >= 500:
        delay = retry_after_ms(headers or {})
        return TransientDeliveryError(
            text, provider="twilio", code=error.code, status=error.status, delay=delay
        )
    return PermanentDeliveryError(text, provider="twilio", code=error.code, status=error.status)


def retry_after_ms(headers: Mapping[str, str]) -> int | None:
    """Retry-After in seconds, as milliseconds; None when absent or not a number of seconds."""
    try:
        return max(0, int(float(headers.get("Retry-After", "")) * 1000))
    except (TypeError, ValueError):
        return None


def receipt_is_retryable(code: str) -> bool:
    """Whether a Twilio receipt's error code is worth another attempt."""
    return code.isdigit() and int(code) in TWILIO_RETRYABLE_RECEIPT_CODES


def email_error(error: Exception) -> DeliveryError:
    """The email backend's error: anymail's (an ESP's API) or SMTP's."""
    if isinstance(error, AnymailError):
        return anymail_error(error)
    if isinstance(error, ImproperlyConfigured):  # AnymailConfigurationError: retry once it is fixed
        return PermanentDeliveryError(f"The email backend is not configured: {error}", provider="email")
    return smtp_error(error)


def anymail_error(error: AnymailError) -> DeliveryError:
    """Refused recipients and requests the ESP will never accept are permanent; the ESP's rate
    limits, its server errors and network trouble are transient."""
    text = f"The email provider refused the message: {error}"
    provider = getattr(error, "esp_name", None) or "anymail"
    status = getattr(error, "status_code", None)
    if isinstance(
        error,
        (
            AnymailRecipientsRefused,
            AnymailInvalidAddress,
            AnymailUnsupportedFeature,
            AnymailSerializationError,
        ),
    ):
        return PermanentDeliveryError(text, provider=provider, status=status)
    if isinstance(error, AnymailAPIError) and status is not None:
        if status == 429 or status >= 500:
            return TransientDeliveryError(text, provider=provider, status=status)
        return PermanentDeliveryError(text, provider=provider, code=status, status=status)
    return TransientDeliveryError(f"Could not reach the email provider: {error}", provider=provider)


def smtp_error(error: Exception) -> DeliveryError:
    """SMTP 5xx replies are permanent; 4xx replies and connection trouble are worth retrying."""
    code = smtp_code(error)
    if code is not None and 500 <= code < 600:
        return PermanentDeliveryError(f"SMTP server refused the message: {error}", provider="smtp", code=code)
    if code is not None or isinstance(error, (smtplib.SMTPException, socket.error, TimeoutError)):
        return TransientDeliveryError(f"SMTP delivery failed: {error}", provider="smtp", code=code)
    return TransientDeliveryError(f"Email backend error: {error!r}", provider="email", expected=False)


def smtp_code(error: Exception) -> int | None:
    if isinstance(error, smtplib.SMTPResponseException):
        return error.smtp_code
    if isinstance(error, smtplib.SMTPRecipientsRefused) and error.recipients:
        code, _ = next(iter(error.recipients.values()))
        return code
    return None

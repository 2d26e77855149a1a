"""What each provider error means: worth retrying (transient) or not (permanent).

Every channel turns the errors of its provider into PermanentDeliveryError or
TransientDeliveryError here, so the retry policy is readable in one place.
"""

import smtplib
import socket
from collections.abc import Mapping

import requests
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

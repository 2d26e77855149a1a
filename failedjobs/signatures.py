"""Error signatures: one per cause, so that thousands of failures differing only in ids read as a few.

A signature is the exception's class, the provider's error code when there is one, and the message
with what changes from one failure to the next (links, addresses, phone numbers, UUIDs, ids, numbers)
replaced by placeholders. Two failures with the same signature failed for the same reason.
"""

import re
from typing import Any

#: The longest signature stored; a longer one is cut (what follows rarely tells causes apart).
MAX_SIGNATURE_CHARS = 255
MAX_CODE_CHARS = 64

# In this order: a link holds addresses and ids, an address holds numbers, and so on.
PLACEHOLDERS = [
    ("<url>", re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)),
    ("<email>", re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")),
    (
        "<uuid>",
        re.compile(r"\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b", re.IGNORECASE),
    ),
    # A phone number: a + and digits, or digits grouped by spaces, dots or dashes (06 12 34 56 78).
    ("<phone>", re.compile(r"(?<![\w+])\+\d[\d ().-]{5,}\d\b|\b\d{2,4}(?:[ .-]\d{2,4}){3,}\b")),
    # Ids: long hex strings, and words mixing letters and digits (message SIDs, tokens, hashes).
    ("<id>", re.compile(r"\b[0-9a-f]{16,}\b", re.IGNORECASE)),
    ("<id>", re.compile(r"\b(?=[\w-]*\d)(?=[\w-]*[a-z])[\w-]{8,}\b", re.IGNORECASE)),
    ("<n>", re.compile(r"\d+(?:[.,]\d+)*")),
]
WHITESPACE = re.compile(r"\s+")
#: "(twilio error 21211)": how notifications' DeliveryError ends its text with the provider's code.
CODE_IN_TEXT = re.compile(r"\((?:\w+ )?error (?P<code>[\w-]+)\)\s*$", re.IGNORECASE)


def normalise(message: str) -> str:
    """The message with links, addresses, phone numbers, UUIDs, ids and numbers replaced by placeholders."""
    for placeholder, pattern in PLACEHOLDERS:
        message = pattern.sub(placeholder, message)
    return WHITESPACE.sub(" ", message).strip()


def error_signature(exception_class: str, message: str, code: str = "") -> str:
    """``exception_class`` (dotted), ``[code]`` if any, and the normalised message, cut to fit its column.

    >>> error_signature("app.Refused", "User 12 (ann@example.com) refused", "21211")
    'app.Refused [21211]: User <n> (<email>) refused'
    """
    head = f"{exception_class} [{code}]" if code else exception_class
    text = normalise(message)
    signature = f"{head}: {text}" if text else head
    return signature[:MAX_SIGNATURE_CHARS]


def error_code(exception: BaseException | None, message: str = "") -> str:
    """The provider's error code an exception carries (its ``code`` attribute), else one its text ends with.

    Only short text or integer codes count: ``SystemExit.code`` and the like are not error codes
    of a provider, but they are never what a failed message carries.
    """
    code: Any = getattr(exception, "code", None)
    if isinstance(code, int | str) and not isinstance(code, bool) and str(code).strip():
        return str(code).strip()[:MAX_CODE_CHARS]
    match = CODE_IN_TEXT.search(message)
    return match["code"][:MAX_CODE_CHARS] if match else ""

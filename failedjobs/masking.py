"""Hide most of an email address, a phone number or a link's secret parts before showing it to staff."""

import re
from typing import Any

import phonenumbers

from .conf import setting

EMAIL = r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+"
PHONE = r"\+\d{8,15}"
PHONE_NUMBER = re.compile(PHONE)
# A phone number inside text must not be the start of a longer run of digits.
IN_TEXT = re.compile(rf"{EMAIL}|{PHONE}(?!\d)")
URL = re.compile(r"\b(?P<origin>https?://[^/\s\"'<>?#]+)(?P<rest>[^\s\"'<>]*)")


def mask_recipient(value: Any) -> Any:
    """An email address or an E.164 phone number with most of it hidden; anything else as it is.

    A value that only contains one (``whatsapp:+33612345678``) gets that part masked.
    """
    if not isinstance(value, str):
        return value
    local, at, domain = value.rpartition("@")
    if at and local and domain:
        return f"{mask_local_part(local)}@{domain}"
    if PHONE_NUMBER.fullmatch(value):
        return mask_number(value)
    return mask_text(value)


def mask_local_part(local: str) -> str:
    last = local[-1] if len(local) > 2 else ""
    return f"{local[0]}***{last}"


def mask_number(number: str) -> str:
    return f"{number[:3]}******{number[-2:]}"


def mask_text(text: Any) -> Any:
    """The text with every email address and phone number in it masked.

    Phone numbers in any format: E.164, international with spaces or dashes, and national numbers of
    the regions in FAILED_JOBS_PHONE_REGIONS.
    """
    if not text:
        return text
    text = IN_TEXT.sub(lambda match: mask_recipient(match.group()), text)
    for region in setting("FAILED_JOBS_PHONE_REGIONS"):
        text = mask_numbers_of(text, region)
    return text


def mask_numbers_of(text: str, region: str) -> str:
    found = phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID)
    spans = [(match.start, match.end) for match in found]
    for start, end in reversed(spans):
        text = text[:start] + mask_number(text[start:end]) + text[end:]
    return text


def redact_links(text: Any) -> Any:
    """Links cut to their origin: paths and query strings carry tokens (verification, invitations)."""
    if not text:
        return text
    return URL.sub(lambda match: f"{match['origin']}/…" if match["rest"] else match["origin"], text)

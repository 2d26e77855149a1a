"""Hide most of an email address or a phone number before showing it to staff."""

import re

EMAIL = r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+"
PHONE = r"\+\d{8,15}"
PHONE_NUMBER = re.compile(PHONE)
# A phone number inside text must not be the start of a longer run of digits.
IN_TEXT = re.compile(rf"{EMAIL}|{PHONE}(?!\d)")


def mask_recipient(value):
    """An email address or an E.164 phone number with most of it hidden; anything else as it is.

    A value that only contains one (``whatsapp:+33612345678``) gets that part masked.
    """
    if not isinstance(value, str):
        return value
    local, at, domain = value.rpartition("@")
    if at and local and domain:
        return f"{mask_local_part(local)}@{domain}"
    if PHONE_NUMBER.fullmatch(value):
        return f"{value[:3]}******{value[-2:]}"
    return mask_text(value)


def mask_local_part(local):
    last = local[-1] if len(local) > 2 else ""
    return f"{local[0]}***{last}"


def mask_text(text):
    """The text with every email address and every E.164 phone number in it masked."""
    if not text:
        return text
    return IN_TEXT.sub(lambda match: mask_recipient(match.group()), text)

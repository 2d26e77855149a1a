"""Unsubscribe links: a signed token naming a user and a category, usable without signing in.

The token is signed with SECRET_KEY (django.core.signing, under its own salt): changing the user or
the category in it breaks the signature, so a link unsubscribes only the user it was made for, and
only from its category. It does not expire: an old email's link keeps working, as mail clients
expect. Emails carry it in the body and in the ``List-Unsubscribe`` headers (RFC 8058 one-click).
"""

from django.core import signing
from django.urls import reverse

from .conf import setting

SALT = "notifications.unsubscribe"


def make_token(user_id: int, category: str) -> str:
    return signing.dumps([user_id, category], salt=SALT, compress=False)


def read_token(token: str) -> tuple[int, str]:
    """The (user id, category) a token names; signing.BadSignature when it was not made here."""
    value = signing.loads(token, salt=SALT)
    if not (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], int)
        and isinstance(value[1], str)
    ):
        raise signing.BadSignature("Not an unsubscribe token.")
    return value[0], value[1]


def unsubscribe_url(user_id: int, category: str) -> str:
    """The absolute link, or "" when NOTIFICATIONS_SITE_URL is not set (no link can be made)."""
    site = setting("NOTIFICATIONS_SITE_URL").rstrip("/")
    if not site:
        return ""
    return site + reverse("recipients:unsubscribe", args=[make_token(user_id, category)])


def list_unsubscribe_headers(url: str) -> dict[str, str]:
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}

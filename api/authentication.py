"""Who is calling: an API token (``Authorization: Bearer <key>``), or a staff member's session."""

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, get_authorization_header
from rest_framework.request import Request

from .models import ApiToken


class ApiClient:
    """The ``request.user`` of a call made with a token: authenticated, with no model permissions.

    What it may do comes from the token's scope (see permissions.py), never from a user's permissions.
    """

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, token: ApiToken) -> None:
        self.token = token
        self.username = f"token:{token.name}"

    def __str__(self) -> str:
        return self.username

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return False


class TokenAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiToken] | None:
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Give the key as 'Authorization: Bearer <key>'.", code="invalid_token"
            )
        token = ApiToken.objects.authenticate(header[1].decode(errors="replace"))
        if token is None:
            raise exceptions.AuthenticationFailed("Unknown API token.", code="invalid_token")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This API token was revoked.", code="revoked_token")
        return ApiClient(token), token

    def authenticate_header(self, request: Request) -> str:
        # Makes a missing or refused key a 401 (DRF answers 403 to a scheme that names no header).
        return 'Bearer realm="api"'


class StaffSessionAuthentication(SessionAuthentication):
    """A signed-in admin user, with the CSRF check on unsafe methods; non-staff sessions are ignored."""

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        result = super().authenticate(request)
        if result is None or not result[0].is_staff:
            return None
        return result

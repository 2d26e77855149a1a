"""The API token in the OpenAPI schema, as an HTTP bearer scheme."""

from typing import Any

from drf_spectacular.authentication import SessionScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.TokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token made in the admin (API tokens): Authorization: Bearer <key>.",
        }


class StaffSessionScheme(SessionScheme):
    target_class = "api.authentication.StaffSessionAuthentication"

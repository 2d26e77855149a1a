"""The settings the API reads, with their defaults (the README's configuration table documents each)."""

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Requests per client (an API token, or a staff member's session): "600/minute", "20/second"...
    # None turns the limit off.
    "API_RATE_LIMIT": "600/minute",
    # Rows in a page of a list, unless the caller asks for fewer (or more, up to API_MAX_PAGE_SIZE).
    "API_PAGE_SIZE": 100,
    "API_MAX_PAGE_SIZE": 500,
}


def setting(name: str) -> Any:
    """The project's value of an API setting, else its default."""
    return getattr(settings, name, DEFAULTS[name])

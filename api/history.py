"""Every acting call in the admin's history (LogEntry), as an action in the admin would be.

A token's actions are recorded under the user who created it, with the token's name in the message.
"""

from typing import Any

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import Model
from rest_framework.request import Request

from .models import ApiToken


def caller(request: Request) -> str:
    """Who made the call, as the history names them."""
    if isinstance(request.auth, ApiToken):
        return f"API token “{request.auth.name}”"
    return f"{request.user.get_username()} (API)"


def user_id(request: Request) -> int:
    """The user the history records the call under: the token's maker, or the staff member."""
    return request.auth.created_by_id if isinstance(request.auth, ApiToken) else request.user.pk


def bulk_description(request: Request, filters: str) -> str:
    """What a bulk operation's history entry says besides the count: ``all matching ...; through ...``."""
    return f"all matching {filters or 'every failed job'}; through the API, by {caller(request)}"


def record(
    request: Request, message: str, *, model: type[Model], obj: Model, action_flag: int = CHANGE
) -> LogEntry:
    """Add one history entry about ``obj``, as the admin writes one for a change or a deletion."""
    entry: Any = LogEntry.objects.create(
        user_id=user_id(request),
        content_type=ContentType.objects.get_for_model(model),
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        action_flag=action_flag,
        change_message=f"{message} Through the API, by {caller(request)}.",
    )
    return entry

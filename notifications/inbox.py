"""A user's in-app notifications: list, count, mark read, delete. Every function takes the user and
only ever touches their rows: another user's notification is InAppNotification.DoesNotExist.

Lists are newest first, in pages; a page's ``next_cursor`` asks for the one after it. The cursor is
the last row's (created_at, id), so rows written meanwhile never shift a page.
"""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from . import stream
from .exceptions import InvalidNotification
from .models import InAppNotification

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@dataclass
class Page:
    notifications: list[InAppNotification]
    next_cursor: str | None


def notifications_of(user: Any) -> QuerySet[InAppNotification]:
    return InAppNotification.objects.filter(recipient=user)


def list_notifications(
    user: Any, *, cursor: str | None = None, unread_only: bool = False, limit: int = DEFAULT_PAGE_SIZE
) -> Page:
    """A page of the user's notifications, newest first, after ``cursor`` (a page's next_cursor)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidNotification(f"limit must be a number from 1 to {MAX_PAGE_SIZE}, not {limit!r}.")
    rows = notifications_of(user)
    if unread_only:
        rows = rows.filter(read_at__isnull=True)
    if cursor:
        created_at, pk = decode_cursor(cursor)
        rows = rows.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, pk__lt=pk))
    found = list(rows.order_by("-created_at", "-pk")[: limit + 1])
    page = found[:limit]
    more = len(found) > limit
    return Page(page, encode_cursor(page[-1]) if more else None)


def encode_cursor(notification: InAppNotification) -> str:
    value = json.dumps([notification.created_at.isoformat(), notification.pk])
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, pk = json.loads(base64.urlsafe_b64decode(padded.encode()))
        moment = datetime.fromisoformat(created_at)
        if timezone.is_naive(moment) or not isinstance(pk, int):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidNotification(f"{cursor!r} is not a cursor of this list.") from None
    return moment, pk


def unread_count(user: Any) -> int:
    return notifications_of(user).filter(read_at__isnull=True).count()


def mark_read(user: Any, pk: int) -> InAppNotification:
    """Mark one of the user's notifications read (it stays read if it was); DoesNotExist otherwise."""
    notification = notifications_of(user).get(pk=pk)
    if notification.read_at is None:
        notification.read_at = timezone.now()
        notifications_of(user).filter(pk=pk, read_at__isnull=True).update(read_at=notification.read_at)
        stream.publish_count_changed(user.pk)
    return notification


def mark_all_read(user: Any) -> int:
    """Mark every unread notification of the user read; return how many."""
    marked = notifications_of(user).filter(read_at__isnull=True).update(read_at=timezone.now())
    if marked:
        stream.publish_count_changed(user.pk)
    return marked


def delete(user: Any, pk: int) -> None:
    """Delete one of the user's notifications; DoesNotExist when they have none with this id."""
    deleted, _ = notifications_of(user).filter(pk=pk).delete()
    if not deleted:
        raise InAppNotification.DoesNotExist(f"The user has no notification {pk}.")
    stream.publish_count_changed(user.pk)


def as_json(notification: InAppNotification) -> dict[str, Any]:
    return {
        "id": notification.pk,
        "title": notification.title,
        "body": notification.body,
        "link": notification.link,
        "created_at": notification.created_at.isoformat(),
        "read_at": notification.read_at.isoformat() if notification.read_at else None,
    }

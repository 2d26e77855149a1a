"""Recipients' choices, applied when a notification is asked for.

``apply`` is NotificationsService's one call into this module. For a notification addressed to a
user (the in-app recipient, or ``for_user=`` on any call) whose category is not critical:

- turned off for its category and channel: its Delivery is recorded ``skipped``, with the reason;
- an SMS or WhatsApp message due inside the user's quiet hours is scheduled for the end of them;
- an email gets an unsubscribe link (``unsubscribe_url`` in its context) and its headers.

The Delivery keeps the user and the category, so that a notification that waited (a reminder
scheduled for tomorrow, a message held through an outage) is checked again when the worker sends it
(``withhold_at_send``): turned off since, it is ``skipped``; due inside quiet hours set since, it is
scheduled again for their end.
"""

import functools
import logging
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from . import unsubscribe
from .categories import CATEGORIES, Category, category_of, get_category
from .channels import all_channels, get_channel
from .exceptions import InvalidNotification
from .models import Columns, Delivery, NotificationPreference, QuietHours
from .payload import Payload

logger = logging.getLogger("notifications.delivery")

#: The channels whose messages wait for the end of quiet hours: they ring a phone.
QUIET_CHANNELS = frozenset({"sms", "whatsapp"})


def apply(payload: dict[str, Any], *, user: Any = None, category: str = "") -> None:
    """Apply the recipient's preferences to a notification about to be recorded (see above)."""
    found = category_of(payload["template"], category)
    user_id = recipient_user_id(payload["channel"], payload["recipient"], user)
    if user_id is None or found.critical:
        return
    channel = payload["channel"]
    payload.update(for_user_id=user_id, category=found.name)
    enabled, quiet_hours = recipient_settings(user_id, found.name, channel)
    if not enabled:
        reason = f"The user turned off {found.label} by {get_channel(channel).label}."
        payload.update(status=Delivery.Status.SKIPPED, last_error=reason)
        return
    if quiet_hours is not None:
        due = payload["send_at"] or timezone.now()
        payload["send_at"] = quiet_until(*quiet_hours, due) or payload["send_at"]
    if channel == "email":
        link = unsubscribe.unsubscribe_url(user_id, found.name)
        if link:
            payload["context"] = {**payload["context"], "unsubscribe_url": link}


def withhold_at_send(payload: Payload) -> bool:
    """At send time, for a delivery that waited: True when it does not go now, because the user
    turned its category off (it is ``skipped``) or it would ring inside their quiet hours (it is
    ``scheduled`` again for their end, the attempt not counted)."""
    user_id, category, channel = payload.get("for_user_id"), payload.get("category"), payload["channel"]
    if user_id is None or not category:
        return False
    enabled, quiet_hours = recipient_settings(user_id, category, channel)
    now = timezone.now()
    claimed = Delivery.objects.filter(
        pk=payload["delivery_id"], status__in=[Delivery.Status.SENDING, Delivery.Status.QUEUED]
    )
    if not enabled:
        label = CATEGORIES[category].label if category in CATEGORIES else category
        reason = f"The user turned off {label} by {get_channel(channel).label}."
        claimed.update(status=Delivery.Status.SKIPPED, last_error=reason, updated_at=now)
        logger.info("Delivery %s not sent: %s", payload["delivery_id"], reason)
        return True
    until = quiet_until(*quiet_hours, now) if quiet_hours is not None else None
    if until is None:
        return False
    # Only text channels have quiet hours, and their claim counted an attempt that this is not.
    claimed.update(
        status=Delivery.Status.SCHEDULED, send_at=until, attempts=F("attempts") - 1, updated_at=now
    )
    logger.info("Delivery %s waits for the end of quiet hours, %s.", payload["delivery_id"], until)
    return True


def recipient_user_id(channel: str, recipient: str, user: Any) -> int | None:
    """The id of the user a notification is for: ``for_user`` (a user or an id), else the in-app
    recipient."""
    if user is None:
        return int(recipient) if channel == "in_app" else None
    if isinstance(user, get_user_model()):
        if user.pk is None:
            raise InvalidNotification("for_user must be saved before their preferences can apply.")
        return int(user.pk)
    if isinstance(user, int) and not isinstance(user, bool):
        return user
    raise InvalidNotification(f"for_user must be a user or a user id, not {type(user).__name__}.")


def is_enabled(user_id: int, category: str, channel: str) -> bool:
    off = NotificationPreference.objects.filter(
        user_id=user_id, category=category, channel=channel, enabled=False
    )
    return not off.exists()


def recipient_settings(
    user_id: int, category: str, channel: str
) -> tuple[bool, tuple[time, time, str] | None]:
    """Whether the user has the category on for the channel, and their quiet hours (starts, ends,
    time zone) when they hold text messages of that channel.

    One hand-written statement: it runs on every call for a user, and the ORM took longer to build
    the same query with its subqueries than PostgreSQL took to answer it.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            recipient_settings_statement(), {"user": user_id, "category": category, "channel": channel}
        )
        opted_out, starts, ends, zone = cursor.fetchone()
    if channel not in QUIET_CHANNELS or starts is None:
        return not opted_out, None
    # Time objects on PostgreSQL, "22:00:00" on SQLite.
    return not opted_out, (parse_time(starts, "starts"), parse_time(ends, "ends"), zone)


@functools.cache
def recipient_settings_statement() -> str:
    preference, hours = Columns(NotificationPreference), Columns(QuietHours)
    return f"""
        SELECT EXISTS (
                   SELECT 1 FROM {preference.table}
                    WHERE {preference.user} = %(user)s AND {preference.category} = %(category)s
                      AND {preference.channel} = %(channel)s AND NOT {preference.enabled}
               ),
               hours.{hours.starts}, hours.{hours.ends}, hours.{hours.timezone}
          FROM (SELECT 1) AS one
          LEFT JOIN {hours.table} AS hours ON hours.{hours.user} = %(user)s
    """


def quiet_until(starts: time, ends: time, zone_name: str, moment: datetime) -> datetime | None:
    """When a window from ``starts`` to ``ends`` (local times; it may span midnight) that holds
    ``moment`` closes, in UTC; None when ``moment`` is outside it."""
    if starts == ends:
        return None
    zone = ZoneInfo(zone_name)
    local = moment.astimezone(zone)
    now = local.time()
    closes_on = local.date()
    if starts < ends:
        inside = starts <= now < ends
    else:
        inside = now >= starts or now < ends
        if now >= starts:
            closes_on += timedelta(days=1)
    if not inside:
        return None
    return datetime.combine(closes_on, ends, tzinfo=zone).astimezone(UTC)


# Reading and changing preferences, for the views.


def channel_names() -> list[str]:
    return [channel.name for channel in all_channels()]


def preferences_of(user: Any) -> list[dict[str, Any]]:
    """Every category with its setting on every channel: on unless turned off; critical ones always on."""
    off = set(
        NotificationPreference.objects.filter(user=user, enabled=False).values_list("category", "channel")
    )
    return [
        {
            "category": category.name,
            "label": category.label,
            "critical": category.critical,
            "channels": {
                channel: category.critical or (category.name, channel) not in off
                for channel in channel_names()
            },
        }
        for category in CATEGORIES.values()
    ]


def set_preference(user: Any, category: str, channel: str, enabled: bool) -> None:
    """Turn a category on or off on a channel; InvalidNotification for a critical one turned off."""
    found = checked_choice(category, channel, enabled)
    NotificationPreference.objects.update_or_create(
        user=user, category=found.name, channel=channel, defaults={"enabled": enabled}
    )


def set_preferences(user: Any, changes: list[tuple[Any, Any, Any]]) -> None:
    """Several changes, all checked before any is made."""
    for category, channel, enabled in changes:
        checked_choice(category, channel, enabled)
    with transaction.atomic():
        for category, channel, enabled in changes:
            set_preference(user, category, channel, enabled)


def checked_choice(category: Any, channel: Any, enabled: Any) -> Category:
    found = get_category(category)
    get_channel(channel)
    if not isinstance(enabled, bool):
        raise InvalidNotification(f"enabled must be true or false, not {enabled!r}.")
    if found.critical and not enabled:
        raise InvalidNotification(f"{found.label} cannot be turned off.")
    return found


def quiet_hours_of(user: Any) -> dict[str, str] | None:
    hours = QuietHours.objects.filter(user=user).first()
    if hours is None:
        return None
    return {"starts": f"{hours.starts:%H:%M}", "ends": f"{hours.ends:%H:%M}", "timezone": hours.timezone}


def set_quiet_hours(user: Any, starts: Any, ends: Any, zone_name: Any) -> None:
    """Set the user's quiet hours ("HH:MM" local times, an IANA zone); InvalidNotification if invalid."""
    opens, closes = parse_time(starts, "starts"), parse_time(ends, "ends")
    check_zone(zone_name)
    QuietHours.objects.update_or_create(
        user=user, defaults={"starts": opens, "ends": closes, "timezone": zone_name}
    )


def clear_quiet_hours(user: Any) -> None:
    QuietHours.objects.filter(user=user).delete()


def parse_time(value: Any, name: str) -> time:
    if isinstance(value, time):
        return value
    try:
        return time.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidNotification(f"{name} must be a time such as 22:00, not {value!r}.") from None


def check_zone(zone_name: Any) -> None:
    try:
        ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, TypeError, ValueError):
        raise InvalidNotification(f"Unknown time zone {zone_name!r}; use one such as Europe/Paris.") from None

"""What recipients see: their inbox and settings pages, the JSON API behind them, and the
unsubscribe page that email links open.

Pages and API take the signed-in user (session authentication; Django's CSRF protection covers
every POST, PATCH and DELETE) and only ever show or change that user's rows: another user's
notification is a 404. The unsubscribe page needs no sign-in: its signed token names the user.
"""

import functools
import json
from collections.abc import Callable
from typing import Any
from zoneinfo import available_timezones

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import inbox, preferences, unsubscribe
from .categories import CATEGORIES
from .channels import get_channel
from .exceptions import InvalidNotification
from .models import InAppNotification

View = Callable[..., HttpResponse]


def api_login_required(view: View) -> View:
    """Like login_required, but a 401 in JSON rather than a redirect to a sign-in page."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return JsonResponse({"error": "Sign in first."}, status=401)
        try:
            return view(request, *args, **kwargs)
        except InvalidNotification as error:
            return JsonResponse({"error": str(error)}, status=400)
        except InAppNotification.DoesNotExist:
            return JsonResponse({"error": "No such notification."}, status=404)

    return wrapper


def json_body(request: HttpRequest) -> Any:
    try:
        return json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise InvalidNotification("The request body is not JSON.") from None


# The inbox API.


@require_GET
@api_login_required
def api_inbox(request: HttpRequest) -> HttpResponse:
    """GET ?cursor=&unread=1&limit=20: a page of notifications, newest first, and the next cursor."""
    limit = request.GET.get("limit", str(inbox.DEFAULT_PAGE_SIZE))
    if not limit.isdigit():
        raise InvalidNotification(f"limit must be a number, not {limit!r}.")
    page = inbox.list_notifications(
        request.user,
        cursor=request.GET.get("cursor") or None,
        unread_only=request.GET.get("unread") in ("1", "true"),
        limit=int(limit),
    )
    return JsonResponse(
        {
            "notifications": [inbox.as_json(row) for row in page.notifications],
            "next_cursor": page.next_cursor,
        }
    )


@require_GET
@api_login_required
def api_unread_count(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"unread": inbox.unread_count(request.user)})


@require_POST
@api_login_required
def api_mark_read(request: HttpRequest, pk: int) -> HttpResponse:
    return JsonResponse(inbox.as_json(inbox.mark_read(request.user, pk)))


@require_POST
@api_login_required
def api_mark_all_read(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"marked": inbox.mark_all_read(request.user)})


@require_http_methods(["GET", "DELETE"])
@api_login_required
def api_notification(request: HttpRequest, pk: int) -> HttpResponse:
    if request.method == "DELETE":
        inbox.delete(request.user, pk)
        return HttpResponse(status=204)
    return JsonResponse(inbox.as_json(inbox.notifications_of(request.user).get(pk=pk)))


# The preferences API.


@require_http_methods(["GET", "PATCH"])
@api_login_required
def api_preferences(request: HttpRequest) -> HttpResponse:
    """GET: every category on every channel, and the quiet hours. PATCH with
    ``{"preferences": [{"category": ..., "channel": ..., "enabled": ...}], "quiet_hours":
    {"starts": "22:00", "ends": "07:00", "timezone": "Europe/Paris"} or null}``: change them
    (either key may be left out); nothing changes when any of it is invalid."""
    if request.method == "PATCH":
        change_preferences(request.user, json_body(request))
    return JsonResponse(
        {
            "preferences": preferences.preferences_of(request.user),
            "quiet_hours": preferences.quiet_hours_of(request.user),
        }
    )


@transaction.atomic
def change_preferences(user: Any, body: Any) -> None:
    if not isinstance(body, dict):
        raise InvalidNotification("The body must be a JSON object.")
    changes: list[tuple[Any, Any, Any]] = []
    for item in body.get("preferences", []):
        if not isinstance(item, dict):
            raise InvalidNotification("Each preference is an object with category, channel, enabled.")
        changes.append((item.get("category"), item.get("channel"), item.get("enabled")))
    for category, channel, enabled in changes:
        preferences.checked_choice(category, channel, enabled)
    if "quiet_hours" in body:
        hours = body["quiet_hours"]
        if hours is None:
            preferences.clear_quiet_hours(user)
        elif isinstance(hours, dict):
            preferences.set_quiet_hours(user, hours.get("starts"), hours.get("ends"), hours.get("timezone"))
        else:
            raise InvalidNotification("quiet_hours is an object with starts, ends, timezone, or null.")
    preferences.set_preferences(user, changes)


# The pages.


@login_required
@require_http_methods(["GET", "POST"])
def inbox_page(request: HttpRequest) -> HttpResponse:
    """The user's notifications, newest first, with buttons to mark read and delete (no JavaScript
    needed; with it, the unread count follows the live stream)."""
    if request.method == "POST":
        inbox_action(request)
        return redirect(request.get_full_path())
    unread_only = request.GET.get("unread") == "1"
    try:
        page = inbox.list_notifications(
            request.user, cursor=request.GET.get("cursor") or None, unread_only=unread_only
        )
    except InvalidNotification:
        raise Http404("No such page.") from None
    context = {
        "page": page,
        "unread_only": unread_only,
        "unread_count": inbox.unread_count(request.user),
    }
    return render(request, "notifications/inbox.html", context)


def inbox_action(request: HttpRequest) -> None:
    action, pk = request.POST.get("action"), request.POST.get("id", "")
    try:
        if action == "read_all":
            inbox.mark_all_read(request.user)
        elif action == "read" and pk.isdigit():
            inbox.mark_read(request.user, int(pk))
        elif action == "delete" and pk.isdigit():
            inbox.delete(request.user, int(pk))
        else:
            raise Http404("Unknown action.")
    except InAppNotification.DoesNotExist:
        raise Http404("No such notification.") from None


@login_required
@require_http_methods(["GET", "POST"])
def preferences_page(request: HttpRequest) -> HttpResponse:
    """Checkboxes for every category on every channel (critical ones fixed on), and quiet hours."""
    error = ""
    if request.method == "POST":
        try:
            save_preferences_form(request)
        except InvalidNotification as invalid:
            error = str(invalid)
        else:
            return redirect(f"{request.path}?saved=1")
    rows = preferences.preferences_of(request.user)
    channels = [(name, get_channel(name).label) for name in preferences.channel_names()]
    for row in rows:
        row["cells"] = [(name, row["channels"][name]) for name, _ in channels]
    context = {
        "rows": rows,
        "channels": channels,
        "quiet_hours": preferences.quiet_hours_of(request.user),
        "timezones": sorted(available_timezones()),
        "saved": request.GET.get("saved") == "1",
        "error": error,
    }
    return render(request, "notifications/preferences.html", context, status=400 if error else 200)


def save_preferences_form(request: HttpRequest) -> None:
    """Every checkbox of the form: checked is on, absent is off (critical categories are not in it)."""
    changes = [
        (category.name, channel, f"{category.name}:{channel}" in request.POST)
        for category in CATEGORIES.values()
        if not category.critical
        for channel in preferences.channel_names()
    ]
    if request.POST.get("quiet_enabled"):
        preferences.set_quiet_hours(
            request.user,
            request.POST.get("quiet_starts"),
            request.POST.get("quiet_ends"),
            request.POST.get("quiet_timezone"),
        )
    else:
        preferences.clear_quiet_hours(request.user)
    preferences.set_preferences(request.user, changes)


# Unsubscribing from an email link: GET asks, POST does it (RFC 8058's one-click POST included, which
# mail clients send without a CSRF token: the signed token in the address is what authorises it).


@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe_page(request: HttpRequest, token: str) -> HttpResponse:
    try:
        user_id, category_name = unsubscribe.read_token(token)
        category = CATEGORIES[category_name]
        user = get_user_model()._default_manager.get(pk=user_id)
    except (signing.BadSignature, KeyError, get_user_model().DoesNotExist):
        return render(request, "notifications/unsubscribe_invalid.html", status=404)
    if category.critical:
        return render(request, "notifications/unsubscribe_invalid.html", status=404)
    done = request.method == "POST"
    if done:
        preferences.set_preference(user, category.name, "email", False)
    return render(request, "notifications/unsubscribe.html", {"category": category, "done": done})

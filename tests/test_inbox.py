"""The in-app inbox: its service functions and JSON views, each user seeing only their own."""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from notifications import inbox
from notifications.exceptions import InvalidNotification
from notifications.models import InAppNotification
from notifications.retention import purge_notifications

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada(django_user_model):
    return django_user_model.objects.create(username="ada")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create(username="bob")


def write(user, count, **fields):
    """``count`` notifications, a second apart, the last the newest."""
    start = timezone.now() - timedelta(hours=1)
    rows = []
    for index in range(count):
        row = InAppNotification.objects.create(recipient=user, title=f"n{index}", **fields)
        InAppNotification.objects.filter(pk=row.pk).update(created_at=start + timedelta(seconds=index))
        rows.append(row)
    return rows


def signed_in(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/notifications/")  # sets the CSRF cookie
    return client


def csrf(client):
    return {"HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value}


def test_pages_follow_each_other_newest_first_without_gaps(ada, bob):
    write(ada, 7)
    write(bob, 2)

    titles, cursor = [], None
    while True:
        page = inbox.list_notifications(ada, cursor=cursor, limit=3)
        titles += [row.title for row in page.notifications]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert titles == [f"n{index}" for index in reversed(range(7))]


def test_rows_written_between_pages_do_not_shift_them(ada):
    write(ada, 4)
    first = inbox.list_notifications(ada, limit=2)
    InAppNotification.objects.create(recipient=ada, title="newer")

    second = inbox.list_notifications(ada, cursor=first.next_cursor, limit=2)

    assert [row.title for row in second.notifications] == ["n1", "n0"]


def test_unread_filter_count_mark_read_and_mark_all(ada, bob):
    rows = write(ada, 3)
    write(bob, 1)

    inbox.mark_read(ada, rows[1].pk)
    assert [row.title for row in inbox.list_notifications(ada, unread_only=True).notifications] == [
        "n2",
        "n0",
    ]
    assert inbox.unread_count(ada) == 2

    assert inbox.mark_all_read(ada) == 2
    assert inbox.unread_count(ada) == 0
    assert inbox.unread_count(bob) == 1


def test_another_users_notification_cannot_be_touched(ada, bob):
    bobs = write(bob, 1)[0]

    with pytest.raises(InAppNotification.DoesNotExist):
        inbox.mark_read(ada, bobs.pk)
    with pytest.raises(InAppNotification.DoesNotExist):
        inbox.delete(ada, bobs.pk)
    bobs.refresh_from_db()
    assert bobs.read_at is None


@pytest.mark.parametrize("cursor", ["garbage", "eyJ4IjogMX0", "WyIyMDI2LTAxLTAxIiwgMV0"])
def test_a_bad_cursor_is_refused(ada, cursor):
    with pytest.raises(InvalidNotification, match="cursor"):
        inbox.list_notifications(ada, cursor=cursor)


def test_the_api_lists_counts_and_filters(ada, bob):
    rows = write(ada, 3)
    write(bob, 2)
    InAppNotification.objects.filter(pk=rows[0].pk).update(read_at=timezone.now())
    client = signed_in(ada)

    page = client.get("/notifications/api/inbox/?limit=2").json()
    rest = client.get(f"/notifications/api/inbox/?limit=2&cursor={page['next_cursor']}").json()
    unread = client.get("/notifications/api/inbox/?unread=1").json()

    assert [row["title"] for row in page["notifications"]] == ["n2", "n1"]
    assert [row["title"] for row in rest["notifications"]] == ["n0"] and rest["next_cursor"] is None
    assert rest["notifications"][0]["read_at"] is not None
    assert [row["title"] for row in unread["notifications"]] == ["n2", "n1"]
    assert client.get("/notifications/api/inbox/unread-count/").json() == {"unread": 2}
    assert client.get("/notifications/api/inbox/?limit=500").status_code == 400


def test_the_api_marks_read_and_deletes_with_a_csrf_token_only(ada):
    first, second = write(ada, 2)
    client = signed_in(ada)

    assert client.post(f"/notifications/api/inbox/{first.pk}/read/").status_code == 403  # no token
    marked = client.post(f"/notifications/api/inbox/{first.pk}/read/", **csrf(client))
    assert marked.status_code == 200 and marked.json()["read_at"] is not None
    assert client.delete(f"/notifications/api/inbox/{second.pk}/", **csrf(client)).status_code == 204
    assert list(InAppNotification.objects.values_list("title", flat=True)) == ["n0"]
    assert client.post("/notifications/api/inbox/read-all/", **csrf(client)).json() == {"marked": 0}


def test_another_users_notification_is_a_404_in_the_api(ada, bob):
    bobs = write(bob, 1)[0]
    client = signed_in(ada)

    assert client.get(f"/notifications/api/inbox/{bobs.pk}/").status_code == 404
    assert client.post(f"/notifications/api/inbox/{bobs.pk}/read/", **csrf(client)).status_code == 404
    assert client.delete(f"/notifications/api/inbox/{bobs.pk}/", **csrf(client)).status_code == 404
    assert InAppNotification.objects.get(pk=bobs.pk).read_at is None


def test_the_api_needs_a_sign_in(ada):
    client = Client()

    assert client.get("/notifications/api/inbox/").status_code == 401
    assert client.get("/notifications/api/preferences/").status_code == 401
    assert client.get("/notifications/").status_code == 302  # the page sends to the sign-in page


def test_the_preferences_api_reads_and_changes_them(ada):
    client = signed_in(ada)
    change = {
        "preferences": [{"category": "marketing", "channel": "email", "enabled": False}],
        "quiet_hours": {"starts": "22:00", "ends": "07:00", "timezone": "Europe/Paris"},
    }

    changed = client.patch(
        "/notifications/api/preferences/", json.dumps(change), content_type="application/json", **csrf(client)
    ).json()

    marketing = next(row for row in changed["preferences"] if row["category"] == "marketing")
    assert marketing["channels"]["email"] is False and marketing["channels"]["sms"] is True
    assert changed["quiet_hours"] == {"starts": "22:00", "ends": "07:00", "timezone": "Europe/Paris"}
    assert client.get("/notifications/api/preferences/").json() == changed


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            {"preferences": [{"category": "security", "channel": "sms", "enabled": False}]},
            "cannot be turned off",
        ),
        ({"preferences": [{"category": "marketing", "channel": "fax", "enabled": False}]}, "Unknown channel"),
        ({"preferences": [{"category": "marketing", "channel": "sms", "enabled": "no"}]}, "true or false"),
        ({"quiet_hours": {"starts": "22:00", "ends": "07:00", "timezone": "Nowhere"}}, "time zone"),
    ],
)
def test_the_preferences_api_refuses_bad_changes_and_makes_none(ada, change, error):
    client = signed_in(ada)
    change = {**change, "preferences": change.get("preferences", [])}
    if "quiet_hours" not in change:
        change["quiet_hours"] = {"starts": "22:00", "ends": "07:00", "timezone": "UTC"}

    response = client.patch(
        "/notifications/api/preferences/", json.dumps(change), content_type="application/json", **csrf(client)
    )

    assert response.status_code == 400 and error in response.json()["error"]
    assert client.get("/notifications/api/preferences/").json()["quiet_hours"] is None


def test_the_retention_job_purges_old_read_notifications_only(ada):
    old_read, old_unread, recent_read = write(ada, 3)
    long_ago = timezone.now() - timedelta(days=365)
    InAppNotification.objects.filter(pk=old_read.pk).update(read_at=long_ago)
    InAppNotification.objects.filter(pk=recent_read.pk).update(read_at=timezone.now())

    assert purge_notifications(read_inapp_days=90).read_inapp == 1
    assert set(InAppNotification.objects.values_list("pk", flat=True)) == {old_unread.pk, recent_read.pk}

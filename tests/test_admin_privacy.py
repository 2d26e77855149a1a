"""What staff who may only look can learn from the admin: masked values stay masked."""

import pytest
from django.urls import reverse

from failedjobs.masking import mask_text
from tests.factories import failed_job, job_message, new_delivery, staff_client

pytestmark = pytest.mark.django_db

JOBS = reverse("admin:failedjobs_failedjob_changelist")
DELIVERIES = reverse("admin:notifications_delivery_changelist")
TOKEN = "s3cr3t-t0ken"


@pytest.fixture
def viewer():
    """Staff who may view failed jobs and deliveries, and act on nothing."""
    return staff_client("view_failedjob", "view_delivery")


@pytest.fixture
def verification_job():
    message = job_message(
        "email",
        "ada@example.com",
        template="verification",
        context={"verification_url": f"https://app.example.com/verify?token={TOKEN}", "name": "Ada"},
    )
    return failed_job(message=message)


@pytest.mark.parametrize(
    ("url", "query"),
    [
        (JOBS, "kwargs__recipient__startswith=%2B3361"),
        (JOBS, "exception_message__contains=612"),
        (JOBS, "args__0__startswith=x"),
        (DELIVERIES, "recipient__startswith=%2B3361"),
        (DELIVERIES, "idempotency_key__startswith=a"),
    ],
)
def test_lookups_other_than_the_list_filters_are_refused(viewer, admin_client, url, query):
    failed_job()
    new_delivery()

    assert viewer.get(f"{url}?{query}").status_code == 400
    assert admin_client.get(f"{url}?{query}").status_code == 400


@pytest.mark.parametrize(
    ("url", "query"),
    [
        (JOBS, "status__exact=failed"),
        (JOBS, "queue_name=sms&actor_name=deliver_sms"),
        (JOBS, "failed_at__gte=2026-01-01+00%3A00%3A00%2B00%3A00"),
        (DELIVERIES, "channel__exact=sms&status__exact=queued"),
        (DELIVERIES, "template=plain"),
    ],
)
def test_the_list_filters_still_work(viewer, url, query):
    failed_job()
    new_delivery()

    assert viewer.get(f"{url}?{query}").status_code == 200


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("call +33 6 12 34 56 78 now", "call +33******78 now"),
        ("call 06 12 34 56 78 now", "call 06 ******78 now"),
        ("+1 415-555-2671", "+1 ******71"),
        ("whatsapp:+33612345678", "whatsapp:+33******78"),
        ("at 2026-12-03 10:07:39, line 123", "at 2026-12-03 10:07:39, line 123"),
    ],
)
def test_phone_numbers_are_masked_in_any_format(text, masked):
    assert mask_text(text) == masked


def test_staff_who_cannot_act_do_not_see_the_tokens_in_links(viewer, admin_client, verification_job):
    url = reverse("admin:failedjobs_failedjob_change", args=[verification_job.pk])

    seen_by_viewer = viewer.get(url).content.decode()
    seen_by_admin = admin_client.get(url).content.decode()

    assert "https://app.example.com/…" in seen_by_viewer
    assert TOKEN not in seen_by_viewer
    assert TOKEN in seen_by_admin
    assert "a***a@example.com" in seen_by_viewer and "ada@example.com" not in seen_by_viewer


def test_staff_who_cannot_act_search_by_message_id_or_actor_only(viewer, admin_client):
    job = failed_job()  # its error text holds the recipient's number

    def found(client, term):
        return client.get(JOBS, {"q": term}).context["cl"].result_count

    assert found(admin_client, "612345") == 1
    assert found(viewer, "612345") == 0
    assert found(viewer, job.message_id) == 1
    assert found(viewer, "deliver_sms") == 1

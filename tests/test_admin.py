"""The admin of failed jobs and deliveries: masking, read-only pages, retries, deletes, cheap counts."""

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from failedjobs.admin import EstimatedCountPaginator
from failedjobs.masking import mask_recipient, mask_text
from failedjobs.models import FailedJob
from notifications.models import Delivery, InAppNotification
from tests.factories import PHONE, failed_job, new_delivery, staff_client

pytestmark = pytest.mark.django_db

MASKED_PHONE = "+33******78"
EMAIL = "ada.lovelace@example.com"
MASKED_EMAIL = "a***e@example.com"
CHANGELIST = reverse("admin:failedjobs_failedjob_changelist")
RETRY_MATCHING = reverse("admin:failedjobs_failedjob_retry_matching")


def change_url(job):
    return reverse("admin:failedjobs_failedjob_change", args=[job.pk])


def messages_of(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


def statuses():
    return dict(FailedJob.objects.values_list("pk", "status"))


@pytest.fixture
def viewer():
    """A staff user who may look at failed jobs and delete them, but not retry them."""
    return staff_client("view_failedjob", "delete_failedjob")


# Masking


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        (EMAIL, MASKED_EMAIL),
        ("al@example.com", "a***@example.com"),
        (PHONE, MASKED_PHONE),
        ("+4915112345678", "+49******78"),
        ("whatsapp:+33612345678", "whatsapp:+33******78"),
        ("42", "42"),
        (42, 42),
        (None, None),
        ("", ""),
    ],
)
def test_mask_recipient(value, masked):
    assert mask_recipient(value) == masked


def test_mask_text_masks_every_email_and_phone_number():
    text = f"To {PHONE} and {EMAIL}, cc +4915112345678 and bob@example.org."
    assert mask_text(text) == f"To {MASKED_PHONE} and {MASKED_EMAIL}, cc +49******78 and b***b@example.org."


@pytest.mark.parametrize("text", ["order 123456789012", "+1234567", "+1234567890123456789", "", None])
def test_mask_text_leaves_other_numbers_alone(text):
    assert mask_text(text) == text


# The failed-job list


def test_changelist_shows_masked_recipients_and_short_exception_names(admin_client):
    failed_job()
    failed_job("email", EMAIL)

    html = admin_client.get(CHANGELIST).content.decode()

    assert MASKED_PHONE in html and MASKED_EMAIL in html
    assert PHONE not in html and EMAIL not in html
    assert ">PermanentDeliveryError<" in html
    assert "?queue_name=sms" in html and "?actor_name=deliver_email" in html


def test_changelist_filters_by_queue(admin_client):
    sms = failed_job()
    failed_job("email", EMAIL)

    response = admin_client.get(CHANGELIST, {"queue_name": "sms"})

    assert list(response.context["cl"].result_list) == [sms]


def test_queue_and_actor_filters_offer_the_declared_actors(admin_client):
    response = admin_client.get(CHANGELIST)

    queues, actors = (
        [choice["display"] for choice in spec.choices(response.context["cl"])]
        for spec in response.context["cl"].filter_specs[:2]
    )
    assert {"sms", "email", "whatsapp", "in_app"} <= set(queues)
    assert {"deliver_sms", "deliver_email"} <= set(actors)


def test_actor_filter_finds_jobs_of_an_actor_since_removed(admin_client):
    job = failed_job()
    FailedJob.objects.filter(pk=job.pk).update(actor_name="deliver_pigeon")
    failed_job()

    response = admin_client.get(CHANGELIST, {"actor_name": "deliver_pigeon"})

    assert [item.pk for item in response.context["cl"].result_list] == [job.pk]


def test_search_by_message_id_finds_exactly_that_job(admin_client):
    job = failed_job()
    failed_job()

    response = admin_client.get(CHANGELIST, {"q": job.message_id.upper()})

    assert list(response.context["cl"].result_list) == [job]


def test_search_by_words_of_the_error_message(admin_client):
    job = failed_job()

    found = admin_client.get(CHANGELIST, {"q": "21211"}).context["cl"].result_list
    missing = admin_client.get(CHANGELIST, {"q": "timeout"}).context["cl"].result_list

    assert list(found) == [job]
    assert list(missing) == []


def test_changelist_of_a_big_list_shows_the_estimate_instead_of_counting(admin_client, monkeypatch):
    for _ in range(3):
        failed_job()
    failed_job("email", EMAIL)
    monkeypatch.setattr(EstimatedCountPaginator, "threshold", 2)
    monkeypatch.setattr(EstimatedCountPaginator, "planner_estimate", lambda self: 2_000_000)

    unfiltered = admin_client.get(CHANGELIST).context["cl"]
    filtered = admin_client.get(CHANGELIST, {"queue_name": "email"}).context["cl"]

    assert unfiltered.result_count == 2_000_000
    assert len(unfiltered.result_list) == 4
    assert filtered.result_count == 1


# The detail page


def test_detail_page_shows_pretty_json_and_traceback_masked(admin_client):
    job = failed_job()

    html = admin_client.get(change_url(job)).content.decode()

    assert "<pre>{\n  &quot;channel&quot;: &quot;sms&quot;," in html
    assert "&quot;context&quot;: {\n    &quot;text&quot;: &quot;Bonjour&quot;\n  }" in html
    assert "Traceback (most recent call last):" in html
    assert f"{len(job.message_data)} bytes" in html
    assert MASKED_PHONE in html and PHONE not in html


def test_detail_page_is_view_only(admin_client):
    job = failed_job()

    page = admin_client.get(change_url(job))
    post = admin_client.post(change_url(job), {"status": "resolved"})

    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert post.status_code == 403
    assert admin_client.get(reverse("admin:failedjobs_failedjob_add")).status_code == 403


# Actions


def test_retry_selected_sends_the_messages_again(
    admin_client, stub_broker, django_capture_on_commit_callbacks
):
    first, second, other = failed_job(), failed_job(), failed_job()

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            CHANGELIST, {"action": "retry_selected", "_selected_action": [first.pk, second.pk]}
        )

    assert messages_of(response) == ["retried 2, skipped 0"]
    assert statuses() == {first.pk: "retried", second.pk: "retried", other.pk: "failed"}
    assert stub_broker.queues["sms"].qsize() == 2


def test_retry_selected_reads_the_messages_in_batches_not_one_by_one(
    admin_client, stub_broker, django_assert_max_num_queries
):
    few = [failed_job().pk for _ in range(2)]
    many = [failed_job().pk for _ in range(6)]

    with CaptureQueriesContext(connection) as queries:
        admin_client.post(CHANGELIST, {"action": "retry_selected", "_selected_action": few})
    with django_assert_max_num_queries(len(queries)):
        admin_client.post(CHANGELIST, {"action": "retry_selected", "_selected_action": many})

    assert set(statuses().values()) == {"retried"}


def test_retry_selected_skips_jobs_already_retried(
    admin_client, stub_broker, django_capture_on_commit_callbacks
):
    failed, retried = failed_job(), failed_job(status=FailedJob.Status.RETRIED)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            CHANGELIST, {"action": "retry_selected", "_selected_action": [failed.pk, retried.pk]}
        )

    assert messages_of(response) == ["retried 1, skipped 1"]
    assert stub_broker.queues["sms"].qsize() == 1


def test_resolve_selected_marks_failed_jobs_resolved_without_sending(admin_client, stub_broker):
    failed, retried = failed_job(), failed_job(status=FailedJob.Status.RETRIED)

    response = admin_client.post(
        CHANGELIST, {"action": "resolve_selected", "_selected_action": [failed.pk, retried.pk]}, follow=True
    )

    assert messages_of(response) == ["resolved 1, skipped 1"]
    assert statuses() == {failed.pk: "resolved", retried.pk: "retried"}
    assert stub_broker.queues["sms"].qsize() == 0


def test_delete_selected_asks_then_deletes(admin_client):
    first, second, kept = failed_job(), failed_job(), failed_job()
    selection = {"action": "delete_selected", "_selected_action": [first.pk, second.pk]}

    confirmation = admin_client.post(CHANGELIST, selection)
    response = admin_client.post(CHANGELIST, {**selection, "post": "yes"})

    assert "Are you sure" in confirmation.content.decode()
    assert "deleted 2" in messages_of(response)[0]
    assert list(FailedJob.objects.all()) == [kept]


# Retry all matching the current filter


def test_changelist_links_to_retry_matching_with_its_filter(admin_client):
    failed_job()

    html = admin_client.get(CHANGELIST, {"queue_name": "sms", "p": "1"}).content.decode()

    assert f'href="{RETRY_MATCHING}?queue_name=sms"' in html


def test_retry_matching_confirmation_counts_the_filtered_jobs_only(admin_client):
    for status in ["failed", "failed", "retried"]:
        failed_job(status=status)
    failed_job("email", EMAIL)
    before = statuses()

    response = admin_client.get(RETRY_MATCHING, {"queue_name": "sms"})

    html = response.content.decode()
    assert "<strong>2</strong> failed jobs will be sent again." in html
    assert "1 matching job already retried or resolved will be skipped." in html
    assert "<li>queue_name = sms</li>" in html
    assert statuses() == before


def test_retry_matching_confirmed_retries_exactly_the_filtered_jobs(
    admin_client, stub_broker, django_capture_on_commit_callbacks
):
    sms = [failed_job(), failed_job()]
    email = failed_job("email", EMAIL)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"{RETRY_MATCHING}?queue_name=sms", {"confirm": "yes"})

    assert response.status_code == 302
    assert response.url == f"{CHANGELIST}?queue_name=sms"
    assert messages_of(response) == ["retried 2, skipped 0"]
    assert statuses() == {sms[0].pk: "retried", sms[1].pk: "retried", email.pk: "failed"}
    assert stub_broker.queues["sms"].qsize() == 2
    assert stub_broker.queues["email"].qsize() == 0


def test_retry_matching_without_confirm_changes_nothing(admin_client):
    job = failed_job()

    response = admin_client.post(RETRY_MATCHING, {})

    assert response.status_code == 200
    assert statuses() == {job.pk: "failed"}


def test_retry_matching_with_a_bad_filter_goes_back_to_the_list(admin_client):
    response = admin_client.get(RETRY_MATCHING, {"no_such_field": "1"})

    assert response.status_code == 302
    assert response.url == f"{CHANGELIST}?e=1"


def test_retry_matching_needs_the_csrf_token(admin_user):
    job = failed_job()
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)

    response = client.post(RETRY_MATCHING, {"confirm": "yes"})

    assert response.status_code == 403
    assert statuses() == {job.pk: "failed"}


def test_viewer_can_list_but_not_retry(viewer):
    job = failed_job()

    listing = viewer.get(CHANGELIST)
    action = viewer.post(CHANGELIST, {"action": "retry_selected", "_selected_action": [job.pk]})
    retry_matching = viewer.post(RETRY_MATCHING, {"confirm": "yes"})

    assert listing.status_code == 200
    assert "Retry all matching" not in listing.content.decode()
    assert messages_of(action) == ["No action selected."]
    assert retry_matching.status_code == 403
    assert statuses() == {job.pk: "failed"}


def action_names(client):
    return [name for name, _ in client.get(CHANGELIST).context["action_form"].fields["action"].choices]


def test_only_users_who_may_change_jobs_are_offered_the_retry_action(viewer, admin_client):
    failed_job()

    assert action_names(viewer) == ["", "delete_selected"]
    assert action_names(admin_client) == ["", "delete_selected", "retry_selected", "resolve_selected"]


# The paginator


class Estimate(EstimatedCountPaginator):
    """The paginator with a tiny threshold and a fixed planner estimate, to try it without a big table."""

    threshold = 2
    estimate = None

    def planner_estimate(self):
        return self.estimate


def paginator(queryset, estimate):
    result = Estimate(queryset, 100)
    result.estimate = estimate
    return result


def test_paginator_takes_the_estimate_past_the_threshold():
    for _ in range(3):
        failed_job()

    assert paginator(FailedJob.objects.order_by("-failed_at"), 50_000).count == 50_000


def test_paginator_never_reports_fewer_rows_than_it_counted():
    for _ in range(3):
        failed_job()

    assert paginator(FailedJob.objects.all(), 1).count == 3


def test_paginator_counts_exactly_up_to_the_threshold(django_assert_num_queries):
    failed_job()
    failed_job("email", EMAIL)

    with django_assert_num_queries(1):
        assert paginator(FailedJob.objects.all(), 50_000).count == 2
    assert paginator(FailedJob.objects.filter(queue_name="sms"), 50_000).count == 1


def test_paginator_counts_in_full_without_an_estimate():
    for _ in range(3):
        failed_job()

    assert paginator(FailedJob.objects.all(), None).count == 3


def test_paginator_counts_a_plain_list():
    assert paginator([1, 2, 3, 4], 50_000).count == 4


@pytest.mark.postgresql
def test_planner_estimate_reads_the_query_plan_on_postgresql():
    failed_job()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE failedjobs_failedjob")

    estimate = EstimatedCountPaginator(FailedJob.objects.filter(queue_name="sms"), 100).planner_estimate()

    assert isinstance(estimate, int) and estimate >= 1


def test_planner_estimate_is_none_on_other_databases(monkeypatch):
    monkeypatch.setattr(connection, "vendor", "sqlite")

    assert EstimatedCountPaginator(FailedJob.objects.all(), 100).planner_estimate() is None


# Deliveries and in-app notifications


def test_delivery_list_masks_recipients(admin_client):
    new_delivery()
    new_delivery(EMAIL, channel="email")

    html = admin_client.get(reverse("admin:notifications_delivery_changelist")).content.decode()

    assert MASKED_PHONE in html and MASKED_EMAIL in html
    assert PHONE not in html and EMAIL not in html


def test_delivery_search_by_exact_key(admin_client):
    found = new_delivery(idempotency_key="key-0")
    new_delivery(idempotency_key="key-1")

    response = admin_client.get(
        reverse("admin:notifications_delivery_changelist"), {"q": found.idempotency_key}
    )

    assert list(response.context["cl"].result_list) == [found]


def test_delivery_template_filter(admin_client):
    new_delivery()
    verification = new_delivery(EMAIL, channel="email", template="verification")
    url = reverse("admin:notifications_delivery_changelist")

    response = admin_client.get(url, {"template": "verification"})

    template_filter = response.context["cl"].filter_specs[2]
    assert template_filter.lookup_choices == [("plain", "plain"), ("verification", "verification")]
    assert list(response.context["cl"].result_list) == [verification]


def test_delivery_detail_is_read_only_and_masked(admin_client):
    item = new_delivery(last_error=f"Twilio refused {PHONE}", error_code="21211")
    url = reverse("admin:notifications_delivery_change", args=[item.pk])

    html = admin_client.get(url).content.decode()

    assert f"Twilio refused {MASKED_PHONE}" in html and PHONE not in html
    assert 'name="_save"' not in html
    assert admin_client.post(url, {"status": "sent"}).status_code == 403
    assert admin_client.get(reverse("admin:notifications_delivery_add")).status_code == 403
    assert (
        admin_client.post(reverse("admin:notifications_delivery_delete", args=[item.pk])).status_code == 403
    )


def test_delivery_detail_masks_addresses_in_keys(admin_client):
    item = new_delivery(EMAIL, channel="email", dedup_key=f"abandon-recovery:{EMAIL}")
    Delivery.objects.filter(pk=item.pk).update(idempotency_key=f"welcome:{EMAIL}")
    url = reverse("admin:notifications_delivery_change", args=[item.pk])

    html = admin_client.get(url).content.decode()

    assert f"abandon-recovery:{MASKED_EMAIL}" in html and f"welcome:{MASKED_EMAIL}" in html
    assert EMAIL not in html


def test_in_app_list_filters_read_and_unread(admin_client, admin_user):
    unread = InAppNotification.objects.create(recipient=admin_user, title="Unread")
    read = InAppNotification.objects.create(recipient=admin_user, title="Read", read_at=timezone.now())
    url = reverse("admin:notifications_inappnotification_changelist")

    unread_list = admin_client.get(url, {"read": "no"}).context["cl"].result_list
    read_list = admin_client.get(url, {"read": "yes"}).context["cl"].result_list

    assert list(unread_list) == [unread]
    assert list(read_list) == [read]


def test_in_app_delivery_is_read_only(admin_client, admin_user):
    notification = InAppNotification.objects.create(recipient=admin_user, title="Hello")

    response = admin_client.get(
        reverse("admin:notifications_inappnotification_change", args=[notification.pk])
    )

    form = response.context["adminform"].form
    assert "delivery" not in form.fields
    assert "recipient" in form.fields


def test_admin_index_has_no_django_dramatiq_tasks(admin_client):
    from django.contrib import admin
    from django_dramatiq.models import Task

    html = admin_client.get(reverse("admin:index")).content.decode()
    assert not admin.site.is_registered(Task)
    assert "django_dramatiq" not in html
    assert "Django Dramatiq" not in html
    assert ">Tasks<" not in html
    assert "Failed jobs" in html
    assert "Deliveries" in html

"""Failed jobs by cause in the admin: groups, actions on exactly one group, the history, background runs."""

from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.urls import reverse
from django.utils import timezone

from failedjobs import bulk, services
from failedjobs.groups import error_groups
from failedjobs.models import BulkOperation, FailedJob
from tests.factories import failed_job, new_delivery, staff_client
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db

GROUPS = reverse("admin:failedjobs_failedjob_groups")
CHANGELIST = reverse("admin:failedjobs_failedjob_changelist")


def matching(action):
    return reverse(f"admin:failedjobs_failedjob_{action}_matching")


@pytest.fixture
def two_causes():
    """Three invalid numbers (one cause, differing numbers), two SMTP refusals, and an old retried one."""
    invalid = [failed_job("sms", f"+3361234567{n}") for n in range(3)]
    refused = [
        failed_job(
            "email",
            f"user{n}@example.com",
            exception_class="smtplib.SMTPRecipientsRefused",
            exception_message=f"550 mailbox user{n}@example.com unknown",
            error_code="550",
        )
        for n in range(2)
    ]
    failed_job("sms", "+33699999999", status=FailedJob.Status.RETRIED)
    return invalid, refused


def pks(jobs):
    return {job.pk for job in jobs}


def test_groups_count_the_failed_jobs_of_each_cause(two_causes):
    invalid, refused = two_causes

    groups = error_groups(FailedJob.objects.filter(status=FailedJob.Status.FAILED))

    assert [(group.signature, group.count) for group in groups] == [
        (invalid[0].error_signature, 3),
        (refused[0].error_signature, 2),
    ]
    assert groups[0].first_seen == invalid[0].failed_at and groups[0].last_seen == invalid[2].failed_at
    assert groups[0].trend[-1] == 3 and sum(groups[0].trend) == 3
    assert groups[1].exception_class == "smtplib.SMTPRecipientsRefused" and groups[1].error_code == "550"


def test_the_trend_counts_per_hour_over_the_last_day():
    now = timezone.now()
    for hours_ago in (0, 0, 2, 30):
        failed_job("sms", failed_at=now - timedelta(hours=hours_ago))

    [group] = error_groups(FailedJob.objects.all(), now=now)

    assert group.count == 4 and group.last_day == 3
    assert group.trend[-1] == 2 and group.trend[-3] == 1
    assert group.sparkline[-1] == "█" and group.sparkline[0] == "▁"


def test_the_groups_page_lists_failed_groups_with_links_to_each(admin_client, two_causes):
    invalid, _ = two_causes

    response = admin_client.get(GROUPS)

    rows = response.context["rows"]
    assert [row["group"].count for row in rows] == [3, 2]
    html = response.content.decode()
    assert "+3361234567" not in html  # the signatures hold placeholders, not numbers
    listed = admin_client.get(rows[0]["list_url"])
    assert pks(listed.context["cl"].result_list) == pks(invalid)


def test_the_groups_page_takes_the_list_filters(admin_client, two_causes):
    response = admin_client.get(GROUPS, {"error_code": "550"})
    assert [row["group"].count for row in response.context["rows"]] == [2]
    response = admin_client.get(GROUPS, {"status__exact": "retried"})
    assert [row["group"].count for row in response.context["rows"]] == [1]


@pytest.mark.parametrize("action", ["resolve", "delete"])
def test_an_action_on_one_group_acts_on_exactly_that_group(admin_client, admin_user, two_causes, action):
    invalid, refused = two_causes
    rows = admin_client.get(GROUPS).context["rows"]
    url = rows[0]["links"][action]

    confirmation = admin_client.get(url)
    response = admin_client.post(url, {"confirm": "yes"})

    assert confirmation.context["count"] == 3
    assert response.status_code == 302
    left = FailedJob.objects.filter(status=FailedJob.Status.FAILED)
    assert pks(left) == pks(refused)
    if action == "resolve":
        assert set(FailedJob.objects.filter(pk__in=pks(invalid)).values_list("status", flat=True)) == {
            "resolved"
        }
    else:
        assert not FailedJob.objects.filter(pk__in=pks(invalid)).exists()
    [entry] = LogEntry.objects.all()
    assert entry.user == admin_user
    assert entry.action_flag == (CHANGE if action == "resolve" else DELETION)
    assert entry.get_change_message().startswith(f"{action.capitalize()}d 3 failed jobs (")
    assert admin_client.get(GROUPS).context["history"][0] == entry


def test_retrying_one_group_retries_exactly_it_and_is_in_the_history(admin_client, two_causes, stub_broker):
    refused = two_causes[1]
    retried_before = pks(FailedJob.objects.filter(status=FailedJob.Status.RETRIED))
    url = admin_client.get(GROUPS).context["rows"][1]["links"]["retry"]

    admin_client.post(url, {"confirm": "yes"})

    retried = pks(FailedJob.objects.filter(status=FailedJob.Status.RETRIED))
    assert retried - retried_before == pks(refused)
    assert stub_broker.queues["email"].qsize() == 2
    assert LogEntry.objects.get().get_change_message().startswith("Retried 2 failed jobs")


def test_selected_rows_retried_and_resolved_are_in_the_history(admin_client, stub_broker):
    jobs = [failed_job() for _ in range(3)]
    admin_client.post(
        CHANGELIST, {"action": "resolve_selected", "_selected_action": [jobs[0].pk, jobs[1].pk]}
    )
    admin_client.post(CHANGELIST, {"action": "retry_selected", "_selected_action": [jobs[2].pk]})

    messages = sorted(entry.get_change_message() for entry in LogEntry.objects.all())
    assert messages == [
        "Resolved 2 failed jobs (selected in the list)",
        "Retried 1 failed job (selected in the list)",
    ]


def test_resolve_and_delete_all_matching_need_their_permissions(two_causes):
    viewer = staff_client("view_failedjob")
    deleter = staff_client("view_failedjob", "delete_failedjob", username="deleter")

    assert viewer.get(matching("resolve")).status_code == 403
    assert viewer.post(matching("delete"), {"confirm": "yes"}).status_code == 403
    assert deleter.post(matching("resolve"), {"confirm": "yes"}).status_code == 403
    assert deleter.get(matching("delete")).status_code == 200
    assert FailedJob.objects.count() == 6


def test_the_list_links_to_every_matching_action(admin_client):
    html = admin_client.get(CHANGELIST, {"queue_name": "sms"}).content.decode()
    for action in ("retry", "resolve", "delete"):
        assert f'{matching(action)}?queue_name=sms"' in html
    assert f'{GROUPS}?queue_name=sms"' in html


def test_a_large_selection_runs_on_a_worker_with_its_progress(admin_client, admin_user, settings, two_causes):
    settings.FAILED_JOBS_BULK_IN_REQUEST_MAX = 2
    settings.FAILED_JOBS_BULK_BATCH_SIZE = 2
    invalid, refused = two_causes
    url = admin_client.get(GROUPS).context["rows"][0]["links"]["resolve"]

    assert "run on a worker" in admin_client.get(url).content.decode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bulk, "enqueue", lambda pk: None)  # the worker comes later in this test
        response = admin_client.post(url, {"confirm": "yes"})
    operation = BulkOperation.objects.get()
    assert response.url == reverse("admin:failedjobs_bulkoperation_change", args=[operation.pk])
    assert (operation.status, operation.total, operation.done) == ("pending", 3, 0)
    page = admin_client.get(response.url).content.decode()
    assert 'http-equiv="refresh"' in page and "0 of 3" in page
    late = failed_job("sms", "+33612345679")  # failed after the confirmation: not part of it

    bulk.run(operation.pk)

    operation.refresh_from_db()
    assert (operation.status, operation.done, operation.percent) == ("done", 3, 100)
    assert set(FailedJob.objects.filter(pk__in=pks(invalid)).values_list("status", flat=True)) == {"resolved"}
    assert FailedJob.objects.get(pk=late.pk).status == "failed"
    assert pks(FailedJob.objects.filter(status="failed")) == pks(refused) | {late.pk}
    assert LogEntry.objects.get().user == admin_user
    assert "http-equiv" not in admin_client.get(response.url).content.decode()


def test_a_bulk_operation_whose_worker_stopped_is_resumed_where_it_stopped(admin_user, two_causes):
    invalid, refused = two_causes
    jobs = FailedJob.objects.filter(pk__in=pks(invalid) | pks(refused))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bulk, "enqueue", lambda pk: None)
        operation = bulk.start(jobs, "resolve", user_id=admin_user.pk)
    first = FailedJob.objects.filter(pk__in=pks(invalid))
    services.resolve_jobs(first)  # what the worker did before it was killed
    BulkOperation.objects.filter(pk=operation.pk).update(status="running", done=first.count())

    bulk.run(operation.pk)  # the message, handed back by the broker

    operation.refresh_from_db()
    assert (operation.status, operation.done) == ("done", operation.total)
    assert set(jobs.values_list("status", flat=True)) == {"resolved"}


def test_a_worker_runs_a_bulk_delete(admin_client, settings, two_causes, stub_broker, stub_worker):
    settings.FAILED_JOBS_BULK_IN_REQUEST_MAX = 1

    admin_client.post(matching("delete") + "?status__exact=failed", {"confirm": "yes"})

    operation = BulkOperation.objects.get()
    wait_until(lambda: BulkOperation.objects.get().status == "done", message="the bulk delete")
    assert FailedJob.objects.count() == 1  # the retried one
    assert BulkOperation.objects.get().done == 5 == operation.total
    assert LogEntry.objects.get().get_change_message() == "Deleted 5 failed jobs (status__exact=failed)"


def test_a_failed_job_links_to_its_delivery_and_back(admin_client):
    delivery = new_delivery(message_id="a" * 32)
    first = failed_job("sms", message_id="a" * 32, status="retried", retried_as="b" * 32)
    first.kwargs = {**first.kwargs, "delivery_id": delivery.pk}
    first.save()
    again = failed_job("sms", message_id="b" * 32)

    job_page = admin_client.get(
        reverse("admin:failedjobs_failedjob_change", args=[first.pk])
    ).content.decode()
    delivery_page = admin_client.get(
        reverse("admin:notifications_delivery_change", args=[delivery.pk])
    ).content.decode()

    assert reverse("admin:notifications_delivery_change", args=[delivery.pk]) in job_page
    for job in (first, again):
        assert reverse("admin:failedjobs_failedjob_change", args=[job.pk]) in delivery_page


def test_search_by_a_whole_recipient_finds_its_jobs_masked(admin_client):
    mine = failed_job("sms", "+33612345678")
    failed_job("sms", "+33698765432")
    email = failed_job("email", "ada@example.com")

    by_number = admin_client.get(CHANGELIST, {"q": "+33612345678"})
    by_email = admin_client.get(CHANGELIST, {"q": "ada@example.com"})

    assert pks(by_number.context["cl"].result_list) == {mine.pk}
    assert "+33612345678</td>" not in by_number.content.decode()
    assert pks(by_email.context["cl"].result_list) == {email.pk}


def test_the_groups_page_needs_the_view_permission(two_causes):
    assert staff_client("view_delivery").get(GROUPS).status_code == 403
    assert staff_client("view_failedjob", username="looker").get(GROUPS).status_code == 200

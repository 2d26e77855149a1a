"""purge_failed_jobs: retention periods that cannot delete what nobody has handled yet."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from failedjobs import services
from failedjobs.models import FailedJob

pytestmark = pytest.mark.django_db

Status = FailedJob.Status


def job(age, status=Status.FAILED):
    return FailedJob.objects.create(
        queue_name="sms",
        actor_name="deliver_sms",
        message_id=f"m-{FailedJob.objects.count()}",
        message_data=b"{}",
        status=status,
        failed_at=timezone.now() - age,
    )


def purge(*args):
    out = StringIO()
    call_command("purge_failed_jobs", *args, stdout=out)
    return out.getvalue().strip()


@pytest.fixture
def jobs(settings):
    settings.FAILED_JOBS_RETENTION_DAYS = 90
    settings.FAILED_JOBS_DONE_RETENTION_DAYS = 30
    return {
        "fresh": job(timedelta(seconds=5)),
        "unhandled_40_days": job(timedelta(days=40)),
        "resolved_40_days": job(timedelta(days=40), Status.RESOLVED),
        "retried_today": job(timedelta(hours=1), Status.RETRIED),
    }


def remaining(jobs):
    pks = set(FailedJob.objects.values_list("pk", flat=True))
    return sorted(name for name, row in jobs.items() if row.pk in pks)


def test_a_negative_number_of_days_is_refused(jobs):
    with pytest.raises(CommandError, match="-1 is not a number of days"):
        purge("--days", "-1")
    with pytest.raises(ValueError, match="0 or more"):
        services.purge_old_jobs(days=-1)

    assert FailedJob.objects.count() == 4


def test_a_short_retention_keeps_unhandled_failures_younger_than_the_setting(jobs):
    assert purge("--days", "0", "--done-days", "0") == "deleted 2"

    assert remaining(jobs) == ["fresh", "unhandled_40_days"]


def test_recent_unhandled_failures_go_only_with_the_explicit_flag(jobs):
    assert purge("--days", "10", "--include-recent-unhandled") == "deleted 2"

    assert remaining(jobs) == ["fresh", "retried_today"]


def test_a_dry_run_counts_and_deletes_nothing(jobs):
    assert purge("--days", "0", "--done-days", "0", "--dry-run") == "Dry run: would have deleted 2"

    assert FailedJob.objects.count() == 4


def test_the_purge_forgets_old_finished_bulk_operations_and_alerts(settings):
    from failedjobs.models import Alert, BulkOperation

    settings.FAILED_JOBS_DONE_RETENTION_DAYS = 30
    old, recent = timezone.now() - timedelta(days=31), timezone.now() - timedelta(days=29)

    def operation(status, finished_at):
        return BulkOperation.objects.create(action="retry", query=b"", status=status, finished_at=finished_at)

    kept = {operation("done", recent).pk, operation("running", None).pk, operation("pending", None).pk}
    operation("done", old)
    operation("failed", old)
    Alert.objects.create(key="new:old", last_sent_at=old)
    Alert.objects.create(key="new:recent", last_sent_at=recent)

    purge()

    assert set(BulkOperation.objects.values_list("pk", flat=True)) == kept
    assert list(Alert.objects.values_list("key", flat=True)) == ["new:recent"]

"""Retry all matching failed jobs in the background, through failedjobs.services.retry_jobs.

A BulkRetry row holds the filters and the progress; the caller polls it.
"""

import logging

from django.utils import timezone

from failedjobs import services
from failedjobs.models import FailedJob

from .filters import RetryMatching
from .models import BulkRetry

logger = logging.getLogger(__name__)


def run(bulk_retry_id: int) -> None:
    """Run a pending bulk retry, saving its progress after every batch."""
    started = BulkRetry.objects.filter(pk=bulk_retry_id, status=BulkRetry.Status.PENDING).update(
        status=BulkRetry.Status.RUNNING, started_at=timezone.now()
    )
    if not started:
        logger.warning("Bulk retry %s is not pending; not run again.", bulk_retry_id)
        return
    bulk_retry = BulkRetry.objects.get(pk=bulk_retry_id)
    match = RetryMatching(data={**bulk_retry.filters, "all": True})
    try:
        match.is_valid(raise_exception=True)
        jobs = match.jobs()
        BulkRetry.objects.filter(pk=bulk_retry_id).update(
            to_retry=jobs.filter(status=FailedJob.Status.FAILED).count()
        )

        def save_progress(result: services.RetryResult) -> None:
            BulkRetry.objects.filter(pk=bulk_retry_id).update(retried=result.retried, skipped=result.skipped)

        result = services.retry_jobs(jobs, on_batch=save_progress)
    except Exception as error:
        BulkRetry.objects.filter(pk=bulk_retry_id).update(
            status=BulkRetry.Status.FAILED, error=repr(error)[:2000], finished_at=timezone.now()
        )
        raise
    BulkRetry.objects.filter(pk=bulk_retry_id).update(
        status=BulkRetry.Status.DONE,
        retried=result.retried,
        skipped=result.skipped,
        finished_at=timezone.now(),
    )

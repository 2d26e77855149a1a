import dramatiq

from . import bulk


# No retry: a run that fails is marked failed, its job is filed in FailedJob, and the rows it did not
# reach are still failed, for a new "retry all matching" to take. A million rows take minutes.
@dramatiq.actor(queue_name="maintenance", max_retries=0, time_limit=3_600_000)
def retry_matching(bulk_retry_id: int) -> None:
    """Run a "retry all matching" asked for through the API."""
    bulk.run(bulk_retry_id)

"""The settings failedjobs reads, with their defaults: a project that sets none of them still works."""

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Off: messages run synchronously in the sending process. On: they go to the Dramatiq broker.
    "QUEUE_ENABLED": False,
    # After the broker fails, messages run synchronously for this long instead of each waiting for
    # a connection timeout.
    "FAILED_JOBS_BROKER_RETRY_AFTER_S": 5.0,
    "FAILED_JOBS_RETENTION_DAYS": 90,
    "FAILED_JOBS_DONE_RETENTION_DAYS": 30,
    # The keyword argument of a failed message that the admin lists, masked, as its recipient.
    "FAILED_JOBS_RECIPIENT_KWARG": "recipient",
    # Phone numbers written in the national form of these regions are masked too (international ones
    # always are).
    "FAILED_JOBS_PHONE_REGIONS": ["FR", "US"],
    # An admin action on more failed jobs than this runs on a worker (a BulkOperation), in batches.
    "FAILED_JOBS_BULK_IN_REQUEST_MAX": 1000,
    "FAILED_JOBS_BULK_BATCH_SIZE": 1000,
    # Alerts (checked every minute): to ADMINS by email, and/or to a webhook (Slack-compatible JSON).
    "FAILED_JOBS_ALERT_EMAIL": True,
    "FAILED_JOBS_ALERT_WEBHOOK_URL": "",
    "FAILED_JOBS_ALERT_TIMEOUT_S": 5.0,
    # A group with this many failures within the window is alerted about as growing.
    "FAILED_JOBS_ALERT_WINDOW_S": 600,
    "FAILED_JOBS_ALERT_THRESHOLD": 100,
    # A dead letter still in Redis this long after it died was not filed by reconcile_dead_letters.
    "FAILED_JOBS_ALERT_DEAD_LETTER_AGE_S": 900,
    # The same alert (one group, or the dead letters) is not sent again within this time.
    "FAILED_JOBS_ALERT_REPEAT_AFTER_S": 3600,
}


def setting(name: str) -> Any:
    """The project's value of a failedjobs setting, else its default."""
    return getattr(settings, name, DEFAULTS[name])

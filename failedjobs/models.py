from django.db import models


class FailedJob(models.Model):
    """A Dramatiq message that failed for good, kept whole so that a retry sends exactly it again."""

    class Status(models.TextChoices):
        FAILED = "failed", "Failed"
        RETRIED = "retried", "Retried"
        RESOLVED = "resolved", "Resolved"

    class Source(models.TextChoices):
        WORKER = "worker", "Worker"
        SYNCHRONOUS = "sync", "Synchronous delivery"
        RECONCILED = "reconciled", "Recovered from the Redis dead-letter queue"

    queue_name = models.CharField(max_length=255)
    actor_name = models.CharField(max_length=255)
    message_id = models.CharField(max_length=64, unique=True)
    message_data = models.BinaryField(help_text="The whole encoded Dramatiq message.")
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    exception_class = models.CharField(max_length=255, blank=True, default="")
    exception_message = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=1)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.WORKER)
    enqueued_at = models.DateTimeField(
        null=True, blank=True, help_text="When the message was first enqueued."
    )
    failed_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.FAILED)
    retried_at = models.DateTimeField(null=True, blank=True)
    retried_as = models.CharField("retried as message", max_length=64, blank=True, default="")
    retry_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-failed_at", "-id"]
        indexes = [
            models.Index(fields=["-failed_at", "-id"], name="failedjob_failed_at"),
            models.Index(fields=["status", "-failed_at"], name="failedjob_status_failed_at"),
            models.Index(fields=["queue_name", "-failed_at"], name="failedjob_queue_failed_at"),
            models.Index(fields=["actor_name", "-failed_at"], name="failedjob_actor_failed_at"),
        ]

    def __str__(self):
        return f"{self.actor_name} {self.message_id}"

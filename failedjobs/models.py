from django.conf import settings
from django.db import connection, models
from django.db.models.fields.json import KeyTransform
from django.utils import timezone


class FailedJobQuerySet(models.QuerySet):
    def mark_retried(self, batch: models.QuerySet) -> list[tuple[int, str, bytes]]:
        """Mark a batch (a queryset of pks) retried in one UPDATE ... RETURNING.

        Returns (pk, retried_as, message_data) for the rows that were still failed. retried_as is
        computed by the database as services.new_message_id computes it (MD5 is built into
        PostgreSQL, and Django registers it on SQLite connections). The ORM's update() cannot return
        rows; reading them back would double a bulk retry's round trips.
        """
        column = {field.name: connection.ops.quote_name(field.column) for field in self.model._meta.fields}
        table = connection.ops.quote_name(self.model._meta.db_table)
        select, params = batch.query.sql_with_params()
        statement = (
            f"UPDATE {table} SET {column['status']} = %s, {column['retried_at']} = %s, "
            f"{column['retry_count']} = {column['retry_count']} + 1, "
            f"{column['retried_as']} = MD5({column['message_id']} || '/' || "
            f"CAST({column['retry_count']} + 1 AS TEXT)) "
            f"WHERE {column['status']} = %s AND {column['id']} IN ({select}) "
            f"RETURNING {column['id']}, {column['retried_as']}, {column['message_data']}"
        )
        retried_at = connection.ops.adapt_datetimefield_value(timezone.now())
        with connection.cursor() as cursor:
            cursor.execute(
                statement, [FailedJob.Status.RETRIED, retried_at, FailedJob.Status.FAILED, *params]
            )
            return cursor.fetchall()


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
    error_signature = models.CharField(
        max_length=255,
        blank=True,
        default="",
        help_text="The cause: the exception's class, its error code and its message without ids, "
        "addresses, numbers or links. Failures with the same signature failed for the same reason.",
    )
    error_code = models.CharField(
        max_length=64, blank=True, default="", help_text="The provider's error code, when there is one."
    )
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

    objects = FailedJobQuerySet.as_manager()

    class Meta:
        ordering = ["-failed_at", "-id"]
        indexes = [
            models.Index(fields=["-failed_at", "-id"], name="failedjob_failed_at"),
            models.Index(fields=["status", "-failed_at"], name="failedjob_status_failed_at"),
            models.Index(fields=["queue_name", "-failed_at"], name="failedjob_queue_failed_at"),
            models.Index(fields=["actor_name", "-failed_at"], name="failedjob_actor_failed_at"),
            models.Index(fields=["error_signature", "-failed_at"], name="failedjob_signature_failed_at"),
            # The error groups of a status: counted, first and last seen, from the index alone (COUNT(*)).
            models.Index(
                fields=["status", "error_signature", "failed_at"], name="failedjob_status_signature"
            ),
            models.Index(fields=["error_code", "-failed_at"], name="failedjob_code_failed_at"),
            # The admin's search by a whole recipient (FAILED_JOBS_RECIPIENT_KWARG's default).
            models.Index(KeyTransform("recipient", "kwargs"), name="failedjob_recipient"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_name} {self.message_id}"


class BulkOperation(models.Model):
    """A retry, resolve or delete of many failed jobs, run by a worker rather than in a web request.

    ``query`` is the pickled query of the jobs it acts on (Django's documented way to rebuild a
    queryset elsewhere), limited to the jobs that existed when the operator confirmed.
    """

    class Action(models.TextChoices):
        RETRY = "retry", "Retry"
        RESOLVE = "resolve", "Resolve"
        DELETE = "delete", "Delete"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for a worker"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    action = models.CharField(max_length=16, choices=Action.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    description = models.TextField(blank=True, default="", help_text="The filters it was confirmed with.")
    query = models.BinaryField()
    total = models.PositiveIntegerField(default=0, help_text="Matching jobs when it was confirmed.")
    done = models.PositiveIntegerField(default=0, help_text="Jobs acted on so far.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.total} failed jobs"

    @property
    def percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        return min(100, round(100 * self.done / self.total)) if self.total else 0


class Alert(models.Model):
    """When an alert about one thing (a new error group, a growing one, dead letters) was last sent.

    One row per thing: alerts about it are not repeated within FAILED_JOBS_ALERT_REPEAT_AFTER_S.
    """

    key = models.CharField(max_length=64, unique=True)
    last_sent_at = models.DateTimeField()
    text = models.TextField(blank=True, default="", help_text="What the last alert said.")

    def __str__(self) -> str:
        return self.key

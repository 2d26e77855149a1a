import functools
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import F, Q
from django.utils import timezone
from dramatiq.common import compute_backoff

MAX_ERROR_CHARS = 4000


def channel_choices() -> list[tuple[str, str]]:
    from .channels import all_channels

    return [(channel.name, channel.label) for channel in all_channels()]


class DeliveryQuerySet(models.QuerySet):
    """Every change of a Delivery's status, each one statement that checks the status it changes."""

    def claim(self, pk: int) -> bool:
        """Move a queued (or held, or failed) delivery to sending, counting the attempt; False otherwise.

        Failed too: a retried job's message reaches the broker before the transaction that requeues
        its delivery commits, so a worker can run it while the row still says failed.
        """
        Status = Delivery.Status
        retryable = [Status.QUEUED, Status.HELD, Status.FAILED, Status.UNDELIVERED]
        # Due too: the dispatcher enqueues before the commit that marks the row queued.
        due = Q(status=Status.SCHEDULED, send_at__lte=timezone.now())
        claimed = self.filter(Q(status__in=retryable) | due, pk=pk).update(
            status=Status.SENDING, attempts=F("attempts") + 1, updated_at=timezone.now()
        )
        return claimed == 1

    def mark_sent(self, pk: int, provider_message_id: str = "") -> None:
        now = timezone.now()
        # A receipt may come in before the provider's answer is recorded: it is not undone.
        receipted = [*Delivery.RECEIPT_STATUSES, Delivery.Status.SCHEDULED]
        self.filter(pk=pk).exclude(status__in=receipted).update(
            status=Delivery.Status.SENT,
            provider_message_id=provider_message_id or "",
            sent_at=now,
            updated_at=now,
            last_error="",
            error_code="",
        )

    def record_error(self, pk: int, error: Exception) -> None:
        """A permanent error fails the delivery; any other leaves it queued for the next retry."""
        Status = Delivery.Status
        permanent = getattr(error, "permanent", False)
        code = getattr(error, "code", None)
        self.filter(pk=pk).exclude(status=Status.SENT).update(
            status=Status.FAILED if permanent else Status.QUEUED,
            last_error=describe(error),
            error_code="" if code is None else str(code),
            updated_at=timezone.now(),
        )

    def mark_failed(self, pk: int, error: str = "") -> None:
        """Retries are exhausted, or the error was permanent: the delivery is failed for good."""
        changes = {"last_error": error[:MAX_ERROR_CHARS]} if error else {}
        settled = [Delivery.Status.SENT, *Delivery.RECEIPT_STATUSES]
        self.filter(pk=pk).exclude(status__in=settled).update(
            status=Delivery.Status.FAILED, updated_at=timezone.now(), **changes
        )

    def deliver_in_app(self, pk: int, recipient_id: int, title: str, body: str, link: str) -> int | None:
        """Mark a delivery sent and write its in-app notification, at once; return the notification's
        id, or None when the delivery was sent before.

        On PostgreSQL one statement does both: one round trip and one commit per notification, where
        the ORM's claim, insert and update take three of each (a worker drained in-app notifications
        about four times slower with them). Elsewhere, one transaction.
        """
        if connection.vendor == "postgresql":
            return self.deliver_in_app_in_one_statement(pk, recipient_id, title, body, link)
        now = timezone.now()
        with transaction.atomic():
            sent = (
                self.filter(pk=pk)
                .exclude(status=Delivery.Status.SENT)
                .update(
                    status=Delivery.Status.SENT,
                    attempts=F("attempts") + 1,
                    sent_at=now,
                    updated_at=now,
                    last_error="",
                    error_code="",
                )
            )
            if not sent:
                return None
            notification = InAppNotification.objects.create(
                recipient_id=recipient_id, delivery_id=pk, title=title, body=body, link=link
            )
        return notification.pk

    def deliver_in_app_in_one_statement(
        self, pk: int, recipient_id: int, title: str, body: str, link: str
    ) -> int | None:
        parameters: dict[str, Any] = {
            "sent": Delivery.Status.SENT,
            "now": timezone.now(),
            "pk": pk,
            "recipient": recipient_id,
            "title": title,
            "body": body,
            "link": link,
        }
        with connection.cursor() as cursor:
            cursor.execute(deliver_in_app_statement(), parameters)
            row = cursor.fetchone()
        return None if row is None else row[0]

    def schedule_retry(self, pk: int, delay_ms: int | None = None) -> bool:
        """A transient failure run synchronously: the delivery is due again after Dramatiq's backoff
        (or ``delay_ms``), for the dispatcher to send. False when its retries are spent.
        """
        from .conf import setting

        delivery = self.filter(pk=pk, status=Delivery.Status.QUEUED).values("attempts").first()
        if delivery is None or delivery["attempts"] > setting("NOTIFICATIONS_MAX_RETRIES"):
            return False
        if delay_ms is None:
            _, delay_ms = compute_backoff(
                delivery["attempts"] - 1,
                factor=setting("NOTIFICATIONS_MIN_BACKOFF_MS"),
                max_backoff=setting("NOTIFICATIONS_MAX_BACKOFF_MS"),
            )
        due = timezone.now() + timedelta(milliseconds=delay_ms)
        scheduled = self.filter(pk=pk, status=Delivery.Status.QUEUED).update(
            status=Delivery.Status.SCHEDULED, send_at=due, updated_at=timezone.now()
        )
        return scheduled == 1

    def hold(self, pk: int) -> bool:
        """A queued delivery waits for its provider's circuit breaker to close (see gate.py); False
        when it is no longer queued."""
        held = self.filter(pk=pk, status=Delivery.Status.QUEUED).update(
            status=Delivery.Status.HELD, updated_at=timezone.now()
        )
        return held == 1

    def cancel(self) -> int:
        """Cancel the deliveries of the queryset that have not gone yet; return how many.

        A queued one may have its message in Redis already: the worker finds it cancelled and sends
        nothing.
        """
        return self.filter(status__in=Delivery.WAITING_STATUSES).update(
            status=Delivery.Status.CANCELLED, updated_at=timezone.now()
        )

    def requeue(self, pks: Iterable[int]) -> int:
        """Failed (or undelivered) deliveries whose message an operator sends again are waiting once more."""
        failed = [Delivery.Status.FAILED, Delivery.Status.UNDELIVERED]
        return self.filter(pk__in=list(pks), status__in=failed).update(
            status=Delivery.Status.QUEUED, updated_at=timezone.now()
        )


@functools.cache
def deliver_in_app_statement() -> str:
    """DeliveryQuerySet.deliver_in_app's statement for PostgreSQL, names taken from the models."""
    delivery, notification = Columns(Delivery), Columns(InAppNotification)
    return f"""
            WITH sent AS (
                UPDATE {delivery.table}
                   SET {delivery.status} = %(sent)s, {delivery.attempts} = {delivery.attempts} + 1,
                       {delivery.sent_at} = %(now)s, {delivery.updated_at} = %(now)s,
                       {delivery.last_error} = '', {delivery.error_code} = ''
                 WHERE {delivery.id} = %(pk)s AND {delivery.status} <> %(sent)s
             RETURNING {delivery.id}
            )
            INSERT INTO {notification.table}
                   ({notification.recipient}, {notification.delivery}, {notification.title},
                    {notification.body}, {notification.link}, {notification.created_at})
            SELECT %(recipient)s, {delivery.id}, %(title)s, %(body)s, %(link)s, %(now)s FROM sent
            RETURNING {notification.id}
        """


class Columns:
    """A model's table and column names, quoted for hand-written SQL: ``columns(Delivery).status``."""

    def __init__(self, model: type[models.Model]) -> None:
        quote = connection.ops.quote_name
        self.table = quote(model._meta.db_table)
        self.names = {field.name: quote(field.column) for field in model._meta.concrete_fields}

    def __getattr__(self, name: str) -> str:
        try:
            return self.names[name]
        except KeyError:
            raise AttributeError(name) from None


def describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]


class Delivery(models.Model):
    """One notification on its way to one recipient: the delivery log, and the guard against sending twice."""

    class Status(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        QUEUED = "queued", "Queued"
        HELD = "held", "Held (provider down)"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        SKIPPED = "skipped", "Skipped"
        DELIVERED = "delivered", "Delivered"
        UNDELIVERED = "undelivered", "Undelivered"
        SUPPRESSED = "suppressed", "Suppressed"

    #: Not gone yet, and still to go: what cancelling stops.
    WAITING_STATUSES = (Status.SCHEDULED, Status.QUEUED, Status.HELD)
    #: Statuses set from the provider's receipts, which the answer to the send call never overwrites.
    RECEIPT_STATUSES = (Status.DELIVERED, Status.UNDELIVERED)

    idempotency_key = models.CharField(max_length=255, blank=True, default="")
    dedup_key = models.CharField(max_length=255, blank=True, default="")
    topic = models.CharField(
        max_length=255, blank=True, default="", help_text="What it is about, e.g. appointment:42."
    )
    channel = models.CharField(max_length=16, choices=channel_choices)
    template = models.CharField(max_length=100)
    recipient = models.CharField(max_length=320)
    # What the message carries besides the above, so that the dispatcher can send it again.
    context = models.JSONField(default=dict, blank=True)
    language = models.CharField(max_length=16, blank=True, default="")
    # Whose preferences apply (for_user, or the in-app recipient) and under which category; empty when
    # none do (no user known, or a critical category). No foreign key: the log outlives its users.
    for_user_id = models.BigIntegerField(null=True, blank=True, help_text="The user whose preferences apply.")
    category = models.CharField(max_length=32, blank=True, default="")
    send_at = models.DateTimeField(null=True, blank=True, help_text="When a scheduled delivery is due.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    message_id = models.CharField("Dramatiq message id", max_length=64, blank=True, default="")
    provider_message_id = models.CharField(max_length=255, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    error_code = models.CharField(max_length=32, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    receipt_at = models.DateTimeField(
        null=True, blank=True, help_text="When the provider last reported delivered or undelivered."
    )

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "deliveries"
        # Every index is written on each insert and on each status change (which is never a HOT
        # update), so there are only those that queries use, and none of the varchar_pattern_ops
        # copies that db_index and unique add on PostgreSQL. Lookups are exact.
        constraints = [
            models.UniqueConstraint(
                fields=["idempotency_key"], name="delivery_idempotency_key", condition=~Q(idempotency_key="")
            ),
        ]
        indexes = [
            models.Index(fields=["message_id"], name="delivery_message_id"),
            models.Index(
                fields=["provider_message_id"],
                name="delivery_provider_message_id",
                condition=~Q(provider_message_id=""),
            ),
            models.Index(fields=["status", "-created_at"], name="delivery_status_created"),
            models.Index(fields=["channel", "-created_at"], name="delivery_channel_created"),
            models.Index(fields=["-created_at"], name="delivery_created"),
            models.Index(
                fields=["dedup_key", "-created_at"], name="delivery_dedup", condition=~Q(dedup_key="")
            ),
            models.Index(fields=["topic"], name="delivery_topic", condition=~Q(topic="")),
            # The dispatcher's two queries, each over the few rows in its status.
            models.Index(fields=["send_at"], name="delivery_due", condition=Q(status="scheduled")),
            models.Index(fields=["updated_at"], name="delivery_queued_since", condition=Q(status="queued")),
            # The deliveries an open circuit breaker holds, released in the order they were held.
            models.Index(fields=["channel", "updated_at"], name="delivery_held", condition=Q(status="held")),
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} {self.template} #{self.pk} ({self.status})"

    def payload(self, *, recheck: bool = True) -> dict[str, Any]:
        """The keyword arguments of this delivery's message (see payload.Payload). With ``recheck``,
        the user and category whose preferences the worker checks again when it sends."""
        payload = {
            "delivery_id": self.pk,
            "channel": self.channel,
            "recipient": self.recipient,
            "template": self.template,
            "context": self.context,
            "language": self.language,
        }
        if recheck and self.for_user_id is not None and self.category:
            payload.update(for_user_id=self.for_user_id, category=self.category)
        return payload


class InAppNotification(models.Model):
    """A notification shown inside the product, newest first, until the user reads it."""

    # No index of its own: the two below start with the recipient.
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="inapp_notifications", db_index=False
    )
    delivery = models.OneToOneField(Delivery, on_delete=models.SET_NULL, null=True, blank=True)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True, default="")
    link = models.CharField(max_length=500, blank=True, default="")
    read_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["recipient", "-created_at"], name="inapp_unread", condition=Q(read_at__isnull=True)
            ),
            models.Index(fields=["recipient", "-created_at"], name="inapp_recipient_created"),
        ]

    def __str__(self) -> str:
        return self.title


class SuppressionQuerySet(models.QuerySet):
    def of(self, channel: str, recipient: str) -> "SuppressionQuerySet":
        return self.filter(channel=channel, recipient=suppression_address(channel, recipient))


def suppression_address(channel: str, recipient: str) -> str:
    """Email addresses are compared without case; numbers are already in E.164 form."""
    return recipient.strip().lower() if channel == "email" else recipient.strip()


class Suppression(models.Model):
    """A recipient not to send to on a channel any more, and why."""

    class Reason(models.TextChoices):
        STOP = "stop", "Replied STOP"
        HARD_BOUNCE = "hard_bounce", "Hard bounce"
        COMPLAINT = "complaint", "Spam complaint"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed at the email provider"
        MANUAL = "manual", "Added by an operator"

    channel = models.CharField(max_length=16, choices=channel_choices)
    recipient = models.CharField(max_length=320)
    reason = models.CharField(max_length=16, choices=Reason.choices)
    detail = models.TextField(blank=True, default="", help_text="The provider's words, or a note.")
    created_at = models.DateTimeField(default=timezone.now)

    objects = SuppressionQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "recipient"], name="suppression_channel_recipient"),
        ]

    def __str__(self) -> str:
        return f"{self.recipient} on {self.channel}: {self.get_reason_display()}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.recipient = suppression_address(self.channel, self.recipient)
        super().save(*args, **kwargs)


class NotificationPreference(models.Model):
    """A user's choice for one category on one channel. No row: the notifications are sent."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preferences"
    )
    category = models.CharField(max_length=32)
    channel = models.CharField(max_length=16)
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "category", "channel"], name="preference_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.category} by {self.channel}: {'on' if self.enabled else 'off'}"


class QuietHours(models.Model):
    """A daily window, in the user's own time zone, when text messages that can wait do wait."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quiet_hours"
    )
    starts = models.TimeField(help_text="Local time the window opens, e.g. 22:00.")
    ends = models.TimeField(help_text="Local time it closes, e.g. 07:00 (the next morning).")
    timezone = models.CharField(max_length=64, help_text="An IANA time zone, e.g. Europe/Paris.")

    class Meta:
        verbose_name_plural = "quiet hours"

    def __str__(self) -> str:
        return f"{self.starts:%H:%M}-{self.ends:%H:%M} {self.timezone}"

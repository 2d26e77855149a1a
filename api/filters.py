"""The filters of the lists (query parameters) and of "retry all matching" (a JSON body).

Each is a serializer, so that a bad value is a 422 naming the parameter, and the schema lists them.
"""

from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers

from failedjobs import services
from failedjobs.conf import setting as failedjobs_setting
from failedjobs.models import FailedJob
from notifications.models import Delivery


class TimeRange(serializers.Serializer):
    since = serializers.DateTimeField(required=False, help_text="At or after this time (ISO 8601).")
    until = serializers.DateTimeField(required=False, help_text="Before this time (ISO 8601).")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("since") and attrs.get("until") and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": ["Must be later than since."]})
        return attrs


class FailedJobMatch(TimeRange):
    """Which failed jobs: the admin's filters. Every value is matched exactly."""

    queue = serializers.CharField(required=False, help_text="Queue name, e.g. sms.")
    actor = serializers.CharField(required=False, help_text="Actor name, e.g. deliver_sms.")
    exception_class = serializers.CharField(
        required=False, help_text="Full name, e.g. notifications.exceptions.PermanentDeliveryError."
    )
    error_signature = serializers.CharField(
        required=False, help_text="The cause: the error group's signature, as the admin's groups show it."
    )
    error_code = serializers.CharField(required=False, help_text="The provider's error code, e.g. 21211.")
    recipient = serializers.CharField(required=False, help_text="The message's recipient, in full.")
    message_id = serializers.CharField(required=False, help_text="The Dramatiq message id.")

    def jobs(self) -> QuerySet[FailedJob]:
        data = self.validated_data
        jobs = services.filter_jobs(
            queue=data.get("queue"),
            actor=data.get("actor"),
            status=data.get("status"),
            since=data.get("since"),
            until=data.get("until"),
            signature=data.get("error_signature"),
            code=data.get("error_code"),
        )
        if "exception_class" in data:
            jobs = jobs.filter(exception_class=data["exception_class"])
        if "message_id" in data:
            jobs = jobs.filter(message_id=data["message_id"].lower())
        if "recipient" in data:
            kwarg = failedjobs_setting("FAILED_JOBS_RECIPIENT_KWARG")
            # The JSON value, as the failedjob_recipient index holds it (and as the admin searches).
            jobs = jobs.filter(**{f"kwargs__{kwarg}": data["recipient"]})
        return jobs


class FailedJobFilters(FailedJobMatch):
    status = serializers.ChoiceField(choices=FailedJob.Status.choices, required=False)


class RetryMatching(FailedJobMatch):
    """The failed jobs to retry (those in the failed state among the matching ones)."""

    all = serializers.BooleanField(
        default=False, help_text="Every failed job: needed when no filter is given."
    )
    dry_run = serializers.BooleanField(default=False, help_text="Count what would be retried; send nothing.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        filters = set(attrs) - {"all", "dry_run"}
        if not filters and not attrs["all"]:
            raise serializers.ValidationError(
                {"all": ["Nothing selected: give a filter, or all: true to retry every failed job."]}
            )
        return attrs

    def description(self) -> str:
        """The filters as given, for the admin's history: ``queue=sms, since=2026-12-03``."""
        given = {name: value for name, value in self.initial_data.items() if name in self.fields}
        given.pop("dry_run", None)
        return ", ".join(f"{name}={value}" for name, value in sorted(given.items()))


class DeliveryFilters(TimeRange):
    """Which deliveries; since and until apply to when a delivery was created. Values match exactly."""

    channel = serializers.CharField(required=False)
    status = serializers.ChoiceField(choices=Delivery.Status.choices, required=False)
    template = serializers.CharField(required=False)
    topic = serializers.CharField(required=False)
    recipient = serializers.CharField(required=False, help_text="An email address, a phone number...")
    idempotency_key = serializers.CharField(required=False)
    provider_message_id = serializers.CharField(required=False, help_text="Twilio's SID, an email's id...")
    message_id = serializers.CharField(required=False, help_text="The Dramatiq message id.")

    EXACT = (
        "channel",
        "status",
        "template",
        "topic",
        "recipient",
        "idempotency_key",
        "provider_message_id",
        "message_id",
    )

    def deliveries(self) -> QuerySet[Delivery]:
        data = self.validated_data
        deliveries = Delivery.objects.filter(**{name: data[name] for name in self.EXACT if name in data})
        if "since" in data:
            deliveries = deliveries.filter(created_at__gte=data["since"])
        if "until" in data:
            deliveries = deliveries.filter(created_at__lt=data["until"])
        return deliveries

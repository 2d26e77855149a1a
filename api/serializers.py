"""What the API returns. For callers with the ``read`` scope, or staff who may only view, recipients,
addresses, phone numbers and links are masked as the admin masks them (failedjobs/masking.py).
"""

from typing import Any

from rest_framework import serializers

from failedjobs.masking import mask_recipient, mask_text, redact_links
from failedjobs.models import BulkOperation, FailedJob
from notifications.models import Delivery


def masked(value: Any) -> Any:
    """A text, or every text in a JSON value, with addresses and numbers masked and links cut."""
    if isinstance(value, str):
        return redact_links(mask_text(value))
    if isinstance(value, dict):
        return {key: masked(item) for key, item in value.items()}
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


class MaskingSerializer(serializers.ModelSerializer):
    """Masks ``recipient_fields`` with mask_recipient and ``masked_fields`` with masked() unless
    the context says ``unmasked``."""

    recipient_fields: tuple[str, ...] = ()
    masked_fields: tuple[str, ...] = ()

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)
        if not self.context.get("unmasked"):
            for name in self.recipient_fields:
                if name in data:
                    data[name] = mask_recipient(data[name])
            for name in self.masked_fields:
                if name in data:
                    data[name] = masked(data[name])
        return data


class FailedJobSerializer(MaskingSerializer):
    queue = serializers.CharField(source="queue_name")
    actor = serializers.CharField(source="actor_name")
    recipient = serializers.CharField(allow_null=True, help_text="The message's recipient keyword argument.")
    url = serializers.HyperlinkedIdentityField(view_name="api:failed-job-detail")

    recipient_fields: tuple[str, ...] = ("recipient",)
    masked_fields: tuple[str, ...] = ("exception_message",)

    class Meta:
        model = FailedJob
        fields: tuple[str, ...] = (
            "id",
            "url",
            "message_id",
            "queue",
            "actor",
            "status",
            "source",
            "exception_class",
            "exception_message",
            "error_signature",
            "error_code",
            "recipient",
            "attempts",
            "enqueued_at",
            "failed_at",
            "retried_at",
            "retried_as",
            "retry_count",
        )


class FailedJobDetailSerializer(FailedJobSerializer):
    message_size = serializers.IntegerField(help_text="Bytes of the encoded Dramatiq message.")

    masked_fields = ("exception_message", "args", "kwargs", "traceback")

    class Meta(FailedJobSerializer.Meta):
        fields = (*FailedJobSerializer.Meta.fields, "args", "kwargs", "traceback", "message_size")


class RetryResultSerializer(serializers.Serializer):
    retried = serializers.IntegerField()
    skipped = serializers.IntegerField(help_text="Matching jobs not in the failed state.")
    dry_run = serializers.BooleanField(default=False)


class BulkOperationSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:bulk-operation-detail")
    percent = serializers.IntegerField(read_only=True)

    class Meta:
        model = BulkOperation
        fields = (
            "id",
            "url",
            "action",
            "status",
            "description",
            "total",
            "done",
            "percent",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        )


class DeliverySerializer(MaskingSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:delivery-detail")

    recipient_fields: tuple[str, ...] = ("recipient",)
    masked_fields: tuple[str, ...] = ("idempotency_key", "dedup_key", "last_error")

    class Meta:
        model = Delivery
        fields: tuple[str, ...] = (
            "id",
            "url",
            "channel",
            "template",
            "recipient",
            "status",
            "topic",
            "idempotency_key",
            "dedup_key",
            "language",
            "send_at",
            "attempts",
            "message_id",
            "provider_message_id",
            "error_code",
            "last_error",
            "created_at",
            "updated_at",
            "sent_at",
            "receipt_at",
        )


class DeliveryDetailSerializer(DeliverySerializer):
    masked_fields = ("idempotency_key", "dedup_key", "last_error", "context")

    class Meta(DeliverySerializer.Meta):
        fields = (*DeliverySerializer.Meta.fields, "context")


class CancelResultSerializer(serializers.Serializer):
    cancelled = serializers.IntegerField()
    delivery = DeliveryDetailSerializer()

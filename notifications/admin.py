from django.contrib import admin
from django.utils.html import format_html

from failedjobs.admin import EstimatedCountPaginator, ListFilterLookupsOnly
from failedjobs.masking import mask_recipient, mask_text

from .models import Delivery, InAppNotification, NotificationPreference, QuietHours


class TemplateFilter(admin.SimpleListFilter):
    """Templates of the latest deliveries: a SELECT DISTINCT over the whole log would read every row."""

    title = "template"
    parameter_name = "template"
    recent = 10_000

    def lookups(self, request, model_admin):
        latest = Delivery.objects.order_by("-pk").values_list("template", flat=True)[: self.recent]
        return [(name, name) for name in sorted(set(latest))]

    def queryset(self, request, queryset):
        # Any value is accepted, so that an older template can still be asked for in the URL.
        if self.value():
            return queryset.filter(template=self.value())
        return queryset


@admin.register(Delivery)
class DeliveryAdmin(ListFilterLookupsOnly, admin.ModelAdmin):
    """The delivery log, read-only, with recipients and errors masked."""

    list_display = (
        "id",
        "channel",
        "template",
        "masked_recipient",
        "status",
        "attempts",
        "error_code",
        "created_at",
        "sent_at",
    )
    list_filter = ("channel", "status", TemplateFilter, "created_at")
    # Exact and case-sensitive, so that an index on the column can serve the search.
    search_fields = ("idempotency_key__exact", "message_id__exact", "provider_message_id__exact")
    search_help_text = "An idempotency key, a Dramatiq message id or a provider message id."
    sortable_by = ("id", "created_at")
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    fields = (
        "masked_idempotency_key",
        "masked_dedup_key",
        "channel",
        "template",
        "masked_recipient",
        "status",
        "attempts",
        "message_id",
        "provider_message_id",
        "error_code",
        "error",
        "created_at",
        "updated_at",
        "sent_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # The log is also what stops a notification from being sent twice.
        return False

    @admin.display(description="recipient")
    def masked_recipient(self, delivery):
        return mask_recipient(delivery.recipient)

    # Keys are built by callers and may hold an address (abandon recovery's holds the email).
    @admin.display(description="idempotency key")
    def masked_idempotency_key(self, delivery):
        return mask_text(delivery.idempotency_key)

    @admin.display(description="dedup key")
    def masked_dedup_key(self, delivery):
        return mask_text(delivery.dedup_key)

    @admin.display(description="last error")
    def error(self, delivery):
        return format_html("<pre>{}</pre>", mask_text(delivery.last_error))


class ReadFilter(admin.SimpleListFilter):
    """Read or unread, from whether read_at is set."""

    title = "read"
    parameter_name = "read"

    def lookups(self, request, model_admin):
        return [("yes", "Read"), ("no", "Unread")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(read_at__isnull=self.value() == "no")
        return queryset


@admin.register(InAppNotification)
class InAppNotificationAdmin(admin.ModelAdmin):
    """In-app notifications; the delivery that created one cannot be changed."""

    list_display = ("recipient", "title", "read_at", "created_at")
    list_filter = (ReadFilter,)
    list_select_related = ("recipient",)
    raw_id_fields = ("recipient",)
    readonly_fields = ("delivery",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator


def hide_django_dramatiq_tasks() -> None:
    """Remove django_dramatiq's Task admin, which would always be empty here.

    Only django_dramatiq's AdminMiddleware fills that table, and these apps do not use it: failures
    are in the failed-job admin. A project that does use it can register Task again.
    """
    import contextlib
    import importlib

    from django.apps import apps
    from django.contrib.admin.exceptions import NotRegistered

    with contextlib.suppress(LookupError, NotRegistered):
        task = apps.get_model("django_dramatiq", "Task")  # LookupError: django_dramatiq not installed
        # Register it now if autodiscovery has not reached django_dramatiq yet (it comes after
        # notifications in INSTALLED_APPS), so that it cannot be registered after this.
        importlib.import_module("django_dramatiq.admin")
        admin.site.unregister(task)


hide_django_dramatiq_tasks()


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    """Recipients' choices, as they made them on their settings page (read-only here)."""

    list_display = ("user", "category", "channel", "enabled", "updated_at")
    list_filter = ("category", "channel", "enabled")
    raw_id_fields = ("user",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(QuietHours)
class QuietHoursAdmin(admin.ModelAdmin):
    list_display = ("user", "starts", "ends", "timezone")
    raw_id_fields = ("user",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

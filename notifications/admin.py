from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from failedjobs import links
from failedjobs.admin import EstimatedCountPaginator, ListFilterLookupsOnly
from failedjobs.masking import mask_recipient, mask_text
from failedjobs.models import FailedJob

from .channels import get_channel
from .exceptions import InvalidNotification
from .models import Delivery, InAppNotification, NotificationPreference, QuietHours, Suppression
from .status import pipeline_status
from .tasks import ACTOR_NAMES

#: Retries of a retry of ...: more than this many failed jobs for one delivery are not followed.
MAX_FAILED_JOBS_SHOWN = 20


@links.register
def delivery_link(job: FailedJob) -> tuple[str, str] | None:
    """A failed delivery message links to its Delivery in the admin."""
    if job.actor_name not in ACTOR_NAMES or not isinstance(job.kwargs, dict):
        return None
    pk = job.kwargs.get("delivery_id")
    if not isinstance(pk, int):
        return None
    return f"Delivery {pk}", reverse("admin:notifications_delivery_change", args=[pk])


def failed_jobs_of(delivery: Delivery) -> list[FailedJob]:
    """The failed jobs of a delivery's message, then of each retry of it (retried_as), oldest first."""
    found: list[FailedJob] = []
    message_id = delivery.message_id
    while message_id and len(found) < MAX_FAILED_JOBS_SHOWN:
        job = FailedJob.objects.filter(message_id=message_id).only("pk", "status", "retried_as").first()
        if job is None:
            break
        found.append(job)
        message_id = job.retried_as
    return found


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
        "provider_message_id",
        "error_code",
        "short_error",
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
        "for_user_id",
        "category",
        "status",
        "attempts",
        "message_id",
        "provider_message_id",
        "error_code",
        "error",
        "failed_jobs",
        "created_at",
        "updated_at",
        "sent_at",
        "receipt_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # The log is also what stops a notification from being sent twice.
        return False

    def get_urls(self):
        status = path("status/", self.admin_site.admin_view(self.status_view), name="notifications_status")
        return [status, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        context = {"status_url": reverse("admin:notifications_status"), **(extra_context or {})}
        return super().changelist_view(request, context)

    def status_view(self, request):
        """The queues, workers, scheduler, breakers and failed jobs by cause, as ``manage.py
        notifications_status``."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        status = pipeline_status()
        context = {
            **self.admin_site.each_context(request),
            "title": "Pipeline status",
            "opts": self.opts,
            "status": status,
            "groups": [(group, mask_text(group.signature)) for group in status.groups],
            "groups_url": reverse("admin:failedjobs_failedjob_groups"),
            "held_url": reverse("admin:notifications_delivery_changelist") + "?status__exact=held",
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/notifications/status.html", context)

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

    @admin.display(description="failed jobs")
    def failed_jobs(self, delivery):
        jobs = failed_jobs_of(delivery)
        if not jobs:
            return "-"
        return format_html_join(
            ", ",
            '<a href="{}">Failed job {}</a> ({})',
            (
                (
                    reverse("admin:failedjobs_failedjob_change", args=[job.pk]),
                    job.pk,
                    job.get_status_display(),
                )
                for job in jobs
            ),
        )

    @admin.display(description="last error")
    def short_error(self, delivery):
        """The last error's first line, masked and cut short; the whole of it is on the detail page."""
        first_line = mask_text(delivery.last_error).partition("\n")[0]
        return first_line if len(first_line) <= 80 else f"{first_line[:79]}…"

    @admin.display(description="last error")
    def error(self, delivery):
        return format_html("<pre>{}</pre>", mask_text(delivery.last_error))


class SuppressionForm(forms.ModelForm):
    class Meta:
        model = Suppression
        fields = ("channel", "recipient", "reason", "detail")

    def clean(self):
        cleaned = super().clean() or {}
        channel, recipient = cleaned.get("channel"), cleaned.get("recipient")
        if channel and recipient:
            try:
                cleaned["recipient"] = get_channel(channel).clean_recipient(recipient)
            except InvalidNotification as error:
                raise forms.ValidationError({"recipient": str(error)}) from None
        return cleaned


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    """Who is not sent to, on which channel, and why. Add one by hand (reason "manual"); delete one
    to lift it (an inbound START lifts a STOP by itself)."""

    list_display = ("masked_recipient", "channel", "reason", "created_at")
    list_filter = ("channel", "reason", "created_at")
    # Exact: the recipient as stored (E.164 number, or the address in lower case).
    search_fields = ("recipient__exact",)
    search_help_text = "A phone number in E.164 form (+33612345678) or an email address in lower case."
    form = SuppressionForm
    fields = ("channel", "recipient", "reason", "detail", "created_at")
    readonly_fields = ("created_at",)
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        # An entry is lifted by deleting it, not edited into another recipient.
        return ("channel", "recipient", "reason", "created_at") if obj is not None else ("created_at",)

    def get_changeform_initial_data(self, request):
        return {"reason": Suppression.Reason.MANUAL, **super().get_changeform_initial_data(request)}

    @admin.display(description="recipient")
    def masked_recipient(self, suppression):
        return mask_recipient(suppression.recipient)


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

import json
import re
from collections.abc import Sequence
from typing import Any, ClassVar, cast

import dramatiq
from django.contrib import admin, messages
from django.contrib.admin.exceptions import DisallowedModelAdminLookup
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ERROR_FLAG, PAGE_VAR
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Length
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html

from . import services
from .conf import setting
from .masking import mask_recipient, mask_text, redact_links
from .models import FailedJob

#: Never loaded for the list: the encoded message, the traceback and the payload are most of a row's bytes.
LARGE_FIELDS = ("message_data", "traceback", "args", "kwargs")
MESSAGE_ID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}", re.IGNORECASE
)


class EstimatedCountPaginator(Paginator):
    """Counts exactly up to ``threshold`` rows; past that, takes PostgreSQL's planner estimate.

    Counting a million rows, or the quarter of them a filter matches, takes longer than showing a
    page of them. The exact count stops at ``threshold + 1`` rows (a LIMIT in a subquery); beyond,
    the number of pages can be a little off. Other databases are counted in full.
    """

    threshold = 10_000

    @cached_property
    def count(self):
        if not isinstance(self.object_list, QuerySet):
            return super().count
        counted = self.object_list[: self.threshold + 1].count()
        if counted <= self.threshold:
            return counted
        estimate = self.planner_estimate()
        if estimate is None:
            return super().count
        return max(estimate, counted)

    def planner_estimate(self):
        """The planner's row estimate for the list's query, or None off PostgreSQL."""
        queryset = cast(QuerySet, self.object_list)
        if connections[queryset.db].vendor != "postgresql":
            return None
        plan = json.loads(queryset.explain(format="json"))
        return int(plan[0]["Plan"]["Plan Rows"])


class ActorAttributeFilter(admin.SimpleListFilter):
    """Choices from the actors declared on the broker, not from a SELECT DISTINCT over the whole table."""

    def lookups(self, request, model_admin):
        actors = dramatiq.get_broker().actors.values()
        return [
            (name, name) for name in sorted({getattr(actor, str(self.parameter_name)) for actor in actors})
        ]

    def queryset(self, request, queryset):
        # Any value is accepted, so that jobs of an actor since removed can still be found.
        if self.value():
            return queryset.filter(**{self.parameter_name: self.value()})
        return queryset


class QueueFilter(ActorAttributeFilter):
    """Filter on queue_name."""

    title = "queue name"
    parameter_name = "queue_name"


class ActorFilter(ActorAttributeFilter):
    """Filter on actor_name."""

    title = "actor name"
    parameter_name = "actor_name"


class RecentValuesFilter(admin.SimpleListFilter):
    """Choices from the latest failed jobs: a SELECT DISTINCT over the whole table would read every row.

    Any value is accepted in the URL, so that an older one can still be asked for.
    """

    recent = 10_000

    def lookups(self, request, model_admin):
        field = str(self.parameter_name)
        latest = FailedJob.objects.order_by("-pk").values_list(field, flat=True)[: self.recent]
        values = {value for value in latest if value}
        if self.value():
            values.add(self.value())
        return [(value, self.label(value)) for value in sorted(values)]

    def label(self, value):
        return value

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(**{self.parameter_name: self.value()})
        return queryset


class ExceptionClassFilter(RecentValuesFilter):
    """Filter on exception_class."""

    title = "exception"
    parameter_name = "exception_class"

    def label(self, value):
        return value.rpartition(".")[2]


class ErrorCodeFilter(RecentValuesFilter):
    """Filter on error_code (the provider's, e.g. a Twilio error code)."""

    title = "error code"
    parameter_name = "error_code"


class SignatureFilter(admin.SimpleListFilter):
    """Filter on error_signature (the cause); the error groups page links here. Lists only the chosen one."""

    title = "error group"
    parameter_name = "signature"

    def lookups(self, request, model_admin):
        return [(self.value(), self.value())] if self.value() else []

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(error_signature=self.value())
        return queryset


class ListFilterLookupsOnly:
    """Query-string lookups only as the list's own filters make them.

    Django also takes any lookup on a model's own fields from the URL: with
    ?kwargs__recipient__startswith=+3361, staff could find a masked number one digit at a time.
    """

    FIELD_LOOKUPS = ("", "__exact", "__gte", "__lt", "__isnull")
    list_filter: ClassVar[Sequence[Any]]

    def lookup_allowed(self, lookup, value, request=None):
        fields = [entry for entry in self.list_filter if isinstance(entry, str)]
        parameters = [getattr(entry, "parameter_name", None) for entry in self.list_filter]
        field_lookups = {f"{field}{suffix}" for field in fields for suffix in self.FIELD_LOOKUPS}
        return lookup in field_lookups or lookup in parameters


def as_json_block(value, *, links=True):
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return pre(text, links=links)


def pre(text, *, links=True):
    """Text for staff, in a <pre>: addresses and numbers masked, and links too unless ``links``."""
    text = mask_text(text)
    return format_html("<pre>{}</pre>", text if links else redact_links(text))


@admin.register(FailedJob)
class FailedJobAdmin(ListFilterLookupsOnly, admin.ModelAdmin):
    """The dead-letter store: look at failed jobs, send them again or delete them; never edit one."""

    list_display = (
        "id",
        "queue_name",
        "actor_name",
        "exception",
        "attempts",
        "failed_at",
        "status",
        "masked_recipient",
    )
    list_filter = (
        QueueFilter,
        ActorFilter,
        "status",
        ExceptionClassFilter,
        ErrorCodeFilter,
        SignatureFilter,
        "failed_at",
    )
    search_fields = ("=message_id", "actor_name", "exception_message")
    search_help_text = "A message id, or part of an actor name or of an error message."
    #: For staff who may not act on failed jobs: error texts hold numbers and addresses, which a
    #: search would let them guess one character at a time.
    view_only_search_fields = ("=message_id", "actor_name")
    #: ... and links with tokens, which they see cut to their origin.
    VIEW_ONLY_FIELDS = {
        "error": "error_without_links",
        "args_json": "args_without_links",
        "kwargs_json": "kwargs_without_links",
        "traceback_text": "traceback_without_links",
    }
    # Only the indexed columns: sorting a million rows on any other one is a full sort.
    sortable_by = ("id", "failed_at")
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    actions = ["retry_selected", "resolve_selected"]
    fields = (
        "message_id",
        "queue_name",
        "actor_name",
        "status",
        "source",
        "attempts",
        "enqueued_at",
        "failed_at",
        "retried_at",
        "retried_as",
        "retry_count",
        "exception_class",
        "error_code",
        "error_signature",
        "error",
        "args_json",
        "kwargs_json",
        "traceback_text",
        "message_size",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .defer(*LARGE_FIELDS)
            .annotate(
                recipient=KT(f"kwargs__{setting('FAILED_JOBS_RECIPIENT_KWARG')}"),
                message_size=Length("message_data"),
            )
        )

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if MESSAGE_ID.fullmatch(term):
            # Straight to the unique index; with the other search fields OR-ed in, the whole table is read.
            return queryset.filter(message_id=term.lower()), False
        return super().get_search_results(request, queryset, search_term)

    def get_search_fields(self, request):
        return self.search_fields if self.has_retry_permission(request) else self.view_only_search_fields

    def get_fields(self, request, obj=None):
        if self.has_retry_permission(request):
            return self.fields
        return tuple(self.VIEW_ONLY_FIELDS.get(name, name) for name in self.fields)

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_retry_permission(self, request):
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    @admin.display(description="exception")
    def exception(self, job):
        return job.exception_class.rpartition(".")[2]

    @admin.display(description="recipient")
    def masked_recipient(self, job):
        return mask_recipient(job.recipient)

    @admin.display(description="exception message")
    def error(self, job):
        return pre(job.exception_message)

    @admin.display(description="args")
    def args_json(self, job):
        return as_json_block(job.args)

    @admin.display(description="kwargs")
    def kwargs_json(self, job):
        return as_json_block(job.kwargs)

    @admin.display(description="traceback")
    def traceback_text(self, job):
        return pre(job.traceback)

    @admin.display(description="exception message")
    def error_without_links(self, job):
        return pre(job.exception_message, links=False)

    @admin.display(description="args")
    def args_without_links(self, job):
        return as_json_block(job.args, links=False)

    @admin.display(description="kwargs")
    def kwargs_without_links(self, job):
        return as_json_block(job.kwargs, links=False)

    @admin.display(description="traceback")
    def traceback_without_links(self, job):
        return pre(job.traceback, links=False)

    @admin.display(description="encoded message")
    def message_size(self, job):
        return f"{job.message_size} bytes"

    @admin.action(description="Retry selected failed jobs", permissions=["retry"])
    def retry_selected(self, request, queryset):
        self.report_retry(request, services.retry_jobs(queryset))

    @admin.action(description="Mark selected failed jobs as resolved", permissions=["retry"])
    def resolve_selected(self, request, queryset):
        resolved = services.resolve_jobs(queryset)
        self.message_user(request, f"resolved {resolved}, skipped {queryset.count() - resolved}")

    def report_retry(self, request, result):
        self.message_user(request, str(result), messages.SUCCESS if result.retried else messages.WARNING)

    def delete_queryset(self, request, queryset):
        services.delete_jobs(queryset)

    def delete_model(self, request, obj):
        services.delete_jobs(FailedJob.objects.filter(pk=obj.pk))

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}_retry_matching"
        retry_matching = path(
            "retry-matching/", self.admin_site.admin_view(self.retry_matching_view), name=name
        )
        return [retry_matching, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        context = {"retry_matching_url": None, **(extra_context or {})}
        if self.has_retry_permission(request):
            context["retry_matching_url"] = self.url(
                "retry_matching", changelist_filters(request).urlencode()
            )
        return super().changelist_view(request, context)

    def retry_matching_view(self, request):
        """Retry every job the changelist shows under the current filters and search, after a confirmation."""
        if not self.has_retry_permission(request):
            raise PermissionDenied
        filters = changelist_filters(request)
        query = filters.urlencode()
        try:
            jobs = self.get_changelist_instance(request).get_queryset(request)
        except (IncorrectLookupParameters, DisallowedModelAdminLookup):
            return redirect(self.url("changelist", f"{ERROR_FLAG}=1"))
        if request.method == "POST" and "confirm" in request.POST:
            self.report_retry(request, services.retry_jobs(jobs))
            return redirect(self.url("changelist", query))
        context = {
            **self.admin_site.each_context(request),
            "title": "Retry all matching failed jobs",
            "opts": self.opts,
            "preview": services.retry_jobs(jobs, dry_run=True),
            "filters": sorted(filters.items()),
            "changelist_url": self.url("changelist", query),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/failedjobs/failedjob/retry_matching.html", context)

    def url(self, view, query=""):
        url = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_{view}", current_app=self.admin_site.name
        )
        return f"{url}?{query}" if query else url


def changelist_filters(request):
    """The changelist's query string without the page number, which a retry can make out of range."""
    filters = request.GET.copy()
    filters.pop(PAGE_VAR, None)
    return filters

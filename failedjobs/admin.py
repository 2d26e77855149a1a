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
from django.utils.html import format_html, format_html_join

from . import bulk, links, services
from .conf import setting
from .groups import TREND_HOURS, error_groups
from .masking import mask_recipient, mask_text, redact_links
from .models import BulkOperation, FailedJob

Action = BulkOperation.Action

#: A whole email address or E.164 phone number, possibly prefixed (whatsapp:+33612345678).
RECIPIENT = re.compile(r"(?:[a-z]+:)?(?:\+\d{8,15}|[^@\s]+@[^@\s]+\.[^@\s]+)")
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
        "error_code",
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
    search_help_text = (
        "A message id, a recipient's whole email address or phone number, "
        "or part of an actor name or of an error message."
    )
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
        "related",
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
        if RECIPIENT.fullmatch(term) and self.has_retry_permission(request):
            # A whole address or number, matched exactly (never a part of one: see ListFilterLookupsOnly).
            return queryset.filter(**{f"kwargs__{setting('FAILED_JOBS_RECIPIENT_KWARG')}": term}), False
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

    @admin.display(description="about")
    def related(self, job):
        found = links.links_for(job)
        if not found:
            return "-"
        return format_html_join(", ", '<a href="{}">{}</a>', ((url, label) for label, url in found))

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
        result = services.retry_jobs(queryset)
        bulk.record_in_history(request.user.pk, Action.RETRY, result.retried, "selected in the list")
        self.report_retry(request, result)

    @admin.action(description="Mark selected failed jobs as resolved", permissions=["retry"])
    def resolve_selected(self, request, queryset):
        resolved = services.resolve_jobs(queryset)
        bulk.record_in_history(request.user.pk, Action.RESOLVE, resolved, "selected in the list")
        self.message_user(request, f"resolved {resolved}, skipped {queryset.count() - resolved}")

    def report_retry(self, request, result):
        self.message_user(request, str(result), messages.SUCCESS if result.retried else messages.WARNING)

    def delete_queryset(self, request, queryset):
        services.delete_jobs(queryset)

    def delete_model(self, request, obj):
        services.delete_jobs(FailedJob.objects.filter(pk=obj.pk))

    def get_urls(self):
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        urls = [
            path(
                f"{action}-matching/",
                view(self.matching_view),
                {"action": action},
                name=f"{info}_{action}_matching",
            )
            for action in Action.values
        ]
        urls.append(path("groups/", view(self.groups_view), name=f"{info}_groups"))
        return [*urls, *super().get_urls()]

    def may(self, request, action):
        if action == Action.DELETE:
            return self.has_delete_permission(request)
        return self.has_retry_permission(request)

    def changelist_view(self, request, extra_context=None):
        query = changelist_filters(request).urlencode()
        context = {
            "groups_url": self.url("groups", query),
            **{f"{action}_matching_url": None for action in Action.values},
            **(extra_context or {}),
        }
        for action in Action.values:
            if self.may(request, action):
                context[f"{action}_matching_url"] = self.url(f"{action}_matching", query)
        return super().changelist_view(request, context)

    def matching_view(self, request, action):
        """Retry, resolve or delete every job the changelist shows under the current filters and search,
        after a confirmation that says how many. Large selections go to a worker (a BulkOperation)."""
        if not self.may(request, action):
            raise PermissionDenied
        filters = changelist_filters(request)
        query = filters.urlencode()
        try:
            jobs = self.get_changelist_instance(request).get_queryset(request)
        except (IncorrectLookupParameters, DisallowedModelAdminLookup):
            return redirect(self.url("changelist", f"{ERROR_FLAG}=1"))
        count, total = bulk.affected(jobs, action), jobs.count()
        if request.method == "POST" and "confirm" in request.POST:
            description = describe_filters(filters)
            if count > setting("FAILED_JOBS_BULK_IN_REQUEST_MAX"):
                operation = bulk.start(jobs, action, user_id=request.user.pk, description=description)
                self.message_user(request, f"{operation} will run on a worker; its progress is shown here.")
                return redirect(reverse("admin:failedjobs_bulkoperation_change", args=[operation.pk]))
            done = bulk.act(jobs, action)
            bulk.record_in_history(request.user.pk, action, done, description)
            self.report_action(request, action, done, total - done)
            return redirect(self.url("changelist", query))
        context = {
            **self.admin_site.each_context(request),
            "title": f"{action.capitalize()} all matching failed jobs",
            "opts": self.opts,
            "action": action,
            "count": count,
            "skipped": total - count,
            "in_background": count > setting("FAILED_JOBS_BULK_IN_REQUEST_MAX"),
            "filters": sorted(filters.items()),
            "changelist_url": self.url("changelist", query),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/failedjobs/failedjob/matching.html", context)

    def report_action(self, request, action, done, skipped):
        text = f"{bulk.PAST_TENSE[Action(action)].lower()} {done}"
        if action != Action.DELETE:
            text += f", skipped {skipped}"
        self.message_user(request, text, messages.SUCCESS if done else messages.WARNING)

    def groups_view(self, request):
        """The failed jobs of the changelist's filters (failed ones unless a status is chosen), by cause."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        filters = changelist_filters(request)
        filters.pop("signature", None)
        if "status__exact" not in filters:
            filters["status__exact"] = FailedJob.Status.FAILED
        request.GET = filters
        try:
            changelist = self.get_changelist_instance(request)
            jobs = changelist.get_queryset(request)
        except (IncorrectLookupParameters, DisallowedModelAdminLookup):
            return redirect(self.url("changelist", f"{ERROR_FLAG}=1"))
        rows = []
        for group in error_groups(jobs):
            group_query = filters.copy()
            group_query["signature"] = group.signature
            query = group_query.urlencode()
            links = {
                action: self.url(f"{action}_matching", query)
                for action in Action.values
                if self.may(request, action)
            }
            rows.append(
                {
                    "group": group,
                    "signature": mask_text(group.signature),
                    "list_url": self.url("changelist", query),
                    "links": links,
                }
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "Failed jobs by cause",
            "opts": self.opts,
            "cl": changelist,
            "rows": rows,
            "trend_hours": TREND_HOURS,
            "changelist_url": self.url("changelist", filters.urlencode()),
            "history": bulk.recent_history(),
            "operations": BulkOperation.objects.order_by("-created_at")[:5],
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/failedjobs/failedjob/groups.html", context)

    def url(self, view, query=""):
        url = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_{view}", current_app=self.admin_site.name
        )
        return f"{url}?{query}" if query else url


def describe_filters(filters):
    """The filters an action was confirmed with, for the history: 'status__exact=failed, q=...'."""
    text = ", ".join(f"{name}={value}" for name, value in sorted(filters.items()))
    return mask_text(text) if text else "no filter"


def changelist_filters(request):
    """The changelist's query string without the page number, which a retry can make out of range."""
    filters = request.GET.copy()
    filters.pop(PAGE_VAR, None)
    return filters


@admin.register(BulkOperation)
class BulkOperationAdmin(admin.ModelAdmin):
    """Retries, resolves and deletes of many failed jobs run by a worker: what each did, how far it got."""

    list_display = ("id", "action", "status", "progress", "user", "created_at", "finished_at")
    list_filter = ("action", "status")
    fields = (
        "action",
        "status",
        "description",
        "progress",
        "user",
        "created_at",
        "started_at",
        "finished_at",
        "error",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="progress")
    def progress(self, operation):
        return format_html(
            '<progress max="100" value="{}"></progress> {} of {} ({}%)',
            operation.percent,
            operation.done,
            operation.total,
            operation.percent,
        )

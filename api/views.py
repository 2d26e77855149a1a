"""The endpoints under /api/v1/. Every change goes through the services the admin and the management
commands use (failedjobs.services, NotificationsService) and is recorded in the admin's history.
"""

from typing import Any

from django.contrib.admin.models import DELETION
from django.db import transaction
from django.db.models import QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Length
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from failedjobs import bulk, services
from failedjobs.admin import LARGE_FIELDS
from failedjobs.conf import setting as failedjobs_setting
from failedjobs.models import BulkOperation, FailedJob
from notifications.models import Delivery
from notifications.services import NotificationsService

from . import filters, history, serializers
from .authentication import StaffSessionAuthentication, TokenAuthentication
from .errors import Conflict, exception_handler
from .pagination import FailedAtPagination, KeysetPagination
from .permissions import ModelAccess, may_see_unmasked
from .throttling import ClientRateThrottle

ERRORS = {
    401: OpenApiResponse(description="No API key, or an unknown or revoked one (code, detail)."),
    403: OpenApiResponse(description="The token's scope or the user's permissions do not allow it."),
    404: OpenApiResponse(description="No such object."),
    422: OpenApiResponse(description="Invalid parameters (code invalid, errors per parameter)."),
    429: OpenApiResponse(description="Too many requests for this client (API_RATE_LIMIT)."),
}


class ApiView(generics.GenericAPIView):
    """Authentication, permissions, rate limit and error format shared by every endpoint."""

    authentication_classes = [TokenAuthentication, StaffSessionAuthentication]
    permission_classes = [ModelAccess]
    throttle_classes = [ClientRateThrottle]
    pagination_class: Any = None
    #: The model whose admin permissions (for staff) the view needs: view to read, change to act.
    model: Any = None

    def get_exception_handler(self) -> Any:
        return exception_handler

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "unmasked": may_see_unmasked(self.request, self.model)}

    def match(self, filter_class: type[BaseSerializer], data: Any) -> Any:
        match = filter_class(data=data)
        match.is_valid(raise_exception=True)
        return match


def with_recipient(jobs: QuerySet[FailedJob]) -> QuerySet[FailedJob]:
    """The jobs with their recipient keyword argument as ``recipient``, as the admin lists it."""
    return jobs.annotate(recipient=KT(f"kwargs__{failedjobs_setting('FAILED_JOBS_RECIPIENT_KWARG')}"))


class FailedJobView(ApiView):
    model = FailedJob

    def get_queryset(self) -> QuerySet[FailedJob]:
        return with_recipient(FailedJob.objects.annotate(message_size=Length("message_data")))


class FailedJobList(FailedJobView):
    serializer_class = serializers.FailedJobSerializer
    pagination_class = FailedAtPagination

    def get_queryset(self) -> QuerySet[FailedJob]:
        jobs = self.match(filters.FailedJobFilters, self.request.query_params).jobs()
        return with_recipient(jobs.defer(*LARGE_FIELDS))

    @extend_schema(
        operation_id="failed_jobs_list",
        summary="List failed jobs, newest first",
        parameters=[filters.FailedJobFilters],
        responses={200: serializers.FailedJobSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class FailedJobDetail(FailedJobView):
    serializer_class = serializers.FailedJobDetailSerializer

    @extend_schema(
        operation_id="failed_jobs_retrieve",
        summary="A failed job, with its arguments and traceback",
        responses={200: serializer_class, **ERRORS},
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        operation_id="failed_jobs_destroy", summary="Delete a failed job", responses={204: None, **ERRORS}
    )
    def delete(self, request: Request, pk: int) -> Response:
        job = self.get_object()
        with transaction.atomic():
            history.record(request, "Deleted.", model=FailedJob, obj=job, action_flag=DELETION)
            services.delete_jobs(FailedJob.objects.filter(pk=job.pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class FailedJobRetry(FailedJobView):
    serializer_class = serializers.RetryResultSerializer

    @extend_schema(
        operation_id="failed_jobs_retry",
        summary="Retry a failed job",
        description="Sends the job's message again with fresh retries; the job becomes retried.",
        request=None,
        responses={
            200: serializer_class,
            409: OpenApiResponse(description="Not in the failed state."),
            **ERRORS,
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        job = self.get_object()
        if job.status != FailedJob.Status.FAILED:
            raise Conflict(
                f"Failed job {job.pk} is {job.status}: only failed jobs are retried.", code="not_failed"
            )
        result = services.retry_jobs(FailedJob.objects.filter(pk=job.pk))
        history.record(request, f"Retried ({result}).", model=FailedJob, obj=job)
        return Response({"retried": result.retried, "skipped": result.skipped, "dry_run": False})


class FailedJobResolve(FailedJobView):
    serializer_class = serializers.FailedJobDetailSerializer

    @extend_schema(
        operation_id="failed_jobs_resolve",
        summary="Mark a failed job resolved (handled without a retry)",
        request=None,
        responses={
            200: serializer_class,
            409: OpenApiResponse(description="Not in the failed state."),
            **ERRORS,
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        job = self.get_object()
        if not services.resolve_jobs(FailedJob.objects.filter(pk=job.pk)):
            raise Conflict(
                f"Failed job {job.pk} is {job.status}: only failed jobs are resolved.", code="not_failed"
            )
        history.record(request, "Resolved.", model=FailedJob, obj=job)
        return Response(self.get_serializer(self.get_object()).data)


class FailedJobRetryMatching(FailedJobView):
    serializer_class = serializers.RetryResultSerializer

    @extend_schema(
        operation_id="failed_jobs_retry_matching",
        summary="Retry every failed job matching the filters",
        description=(
            "Up to FAILED_JOBS_BULK_IN_REQUEST_MAX failed jobs are retried at once (200). More become a "
            "bulk operation that a worker runs, as in the admin (202, with its URL in Location and in "
            "the body's url, to poll)."
        ),
        request=filters.RetryMatching,
        responses={
            200: serializers.RetryResultSerializer,
            202: serializers.BulkOperationSerializer,
            **ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        match = self.match(filters.RetryMatching, request.data)
        jobs = match.jobs()
        if match.validated_data["dry_run"]:
            result = services.retry_jobs(jobs, dry_run=True)
            return Response({"retried": result.retried, "skipped": result.skipped, "dry_run": True})
        description = history.bulk_description(request, match.description())
        limit = failedjobs_setting("FAILED_JOBS_BULK_IN_REQUEST_MAX")
        if jobs.filter(status=FailedJob.Status.FAILED)[: limit + 1].count() > limit:
            operation = bulk.start(
                jobs, BulkOperation.Action.RETRY, user_id=history.user_id(request), description=description
            )
            data = serializers.BulkOperationSerializer(operation, context=self.get_serializer_context()).data
            return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": data["url"]})
        result = services.retry_jobs(jobs)
        bulk.record_in_history(
            history.user_id(request), BulkOperation.Action.RETRY, result.retried, description
        )
        return Response({"retried": result.retried, "skipped": result.skipped, "dry_run": False})


class BulkOperationDetail(ApiView):
    model = FailedJob
    serializer_class = serializers.BulkOperationSerializer
    queryset = BulkOperation.objects.all()

    @extend_schema(
        operation_id="bulk_operations_retrieve",
        summary="The progress of a bulk operation (a retry of many failed jobs, on a worker)",
        responses={200: serializer_class, **ERRORS},
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(self.get_serializer(self.get_object()).data)


class DeliveryView(ApiView):
    model = Delivery
    queryset = Delivery.objects.all()


class DeliveryList(DeliveryView):
    serializer_class = serializers.DeliverySerializer
    pagination_class = KeysetPagination

    def get_queryset(self) -> QuerySet[Delivery]:
        return self.match(filters.DeliveryFilters, self.request.query_params).deliveries().defer("context")

    @extend_schema(
        operation_id="deliveries_list",
        summary="List deliveries, newest first, or look them up by key, provider id or recipient",
        parameters=[filters.DeliveryFilters],
        responses={200: serializers.DeliverySerializer(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class DeliveryDetail(DeliveryView):
    serializer_class = serializers.DeliveryDetailSerializer

    @extend_schema(
        operation_id="deliveries_retrieve",
        summary="A delivery, with its context",
        responses={200: serializer_class, **ERRORS},
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(self.get_serializer(self.get_object()).data)


class DeliveryCancel(DeliveryView):
    serializer_class = serializers.DeliveryDetailSerializer

    @extend_schema(
        operation_id="deliveries_cancel",
        summary="Cancel a delivery that has not gone yet (scheduled, or queued)",
        request=None,
        responses={
            200: serializer_class,
            409: OpenApiResponse(description="Already sent, failed or cancelled."),
            **ERRORS,
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        delivery = self.get_object()
        if not NotificationsService().cancel(delivery=delivery):
            raise Conflict(
                f"Delivery {delivery.pk} is {delivery.status}: it cannot be cancelled.",
                code="not_cancellable",
            )
        history.record(request, "Cancelled.", model=Delivery, obj=delivery)
        delivery.refresh_from_db()
        return Response(self.get_serializer(delivery).data)

"""Retry, resolve or delete the failed jobs an operator selected, and write it in the admin's history.

Small selections are acted on at once; larger ones (over FAILED_JOBS_BULK_IN_REQUEST_MAX) become a
BulkOperation that a worker runs in batches, recording its progress, so that no web request holds a
million-row update.
"""

import logging
import pickle
from collections.abc import Callable

from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from . import dispatch, services
from .conf import setting
from .models import BulkOperation, FailedJob

logger = logging.getLogger(__name__)

Action = BulkOperation.Action
PAST_TENSE = {Action.RETRY: "Retried", Action.RESOLVE: "Resolved", Action.DELETE: "Deleted"}


def affected(jobs: QuerySet[FailedJob], action: str) -> int:
    """How many of ``jobs`` the action would change: retry and resolve skip jobs no longer failed."""
    if action == Action.DELETE:
        return jobs.count()
    return jobs.filter(status=FailedJob.Status.FAILED).count()


def act(
    jobs: QuerySet[FailedJob],
    action: str,
    *,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Do ``action`` to ``jobs`` now; return how many were retried, resolved or deleted."""
    if action == Action.RETRY:
        size = batch_size or services.DEFAULT_BATCH_SIZE
        return services.retry_jobs(jobs, batch_size=size, progress=progress).retried
    if action == Action.RESOLVE:
        return services.resolve_jobs(jobs, batch_size=batch_size, progress=progress)
    if action == Action.DELETE:
        return services.delete_jobs(jobs, batch_size=batch_size, progress=progress)
    raise ValueError(f"Unknown action {action!r}: one of {', '.join(Action.values)}.")


def record_in_history(user_id: int | None, action: str, count: int, description: str = "") -> None:
    """One entry in the admin's history (LogEntry) for an action on many failed jobs: who, when, how many."""
    if user_id is None:
        return
    what = f"{count} failed job{'' if count == 1 else 's'}"
    message = f"{PAST_TENSE[Action(action)]} {what}"
    LogEntry.objects.create(
        user_id=user_id,
        content_type=ContentType.objects.get_for_model(FailedJob),
        object_id=None,
        object_repr=what,
        action_flag=DELETION if action == Action.DELETE else CHANGE,
        change_message=f"{message} ({description})" if description else message,
    )


def start(
    jobs: QuerySet[FailedJob], action: str, *, user_id: int | None, description: str = ""
) -> BulkOperation:
    """A BulkOperation for ``jobs`` as they are now, handed to a worker once it is committed.

    Jobs that fail after this call are not part of it. With the queue off it runs here, after the commit.
    """
    newest_pk = FailedJob.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    selection = jobs.filter(pk__lte=newest_pk).order_by()
    with transaction.atomic():
        operation = BulkOperation.objects.create(
            action=action,
            description=description,
            query=pickle.dumps(selection.query),
            total=affected(selection, action),
            user_id=user_id,
        )
        transaction.on_commit(lambda: enqueue(operation.pk))
    return operation


def enqueue(operation_id: int) -> None:
    from .tasks import run_bulk_operation

    dispatch.send(run_bulk_operation.message(operation_id))


def run(operation_id: int) -> None:
    """Run a BulkOperation in batches, saving its progress after each, then record it in the history."""
    operation = BulkOperation.objects.get(pk=operation_id)
    if operation.status in (BulkOperation.Status.DONE, BulkOperation.Status.FAILED):
        logger.warning("Bulk operation %s is %s already; not run again.", operation.pk, operation.status)
        return
    already_done = 0
    if operation.status == BulkOperation.Status.RUNNING:
        # The broker hands a message back only once its worker is gone: go on where it stopped. Each
        # action skips the jobs it already changed (retried, resolved or deleted).
        logger.warning("Bulk operation %s was stopped at %s jobs; resuming it.", operation.pk, operation.done)
        already_done = operation.done
    else:
        update(operation, status=BulkOperation.Status.RUNNING, started_at=timezone.now())
    jobs = FailedJob.objects.all()
    jobs.query = pickle.loads(bytes(operation.query))  # only start() writes it
    try:
        count = already_done + act(
            jobs,
            operation.action,
            batch_size=setting("FAILED_JOBS_BULK_BATCH_SIZE"),
            progress=lambda done: update(operation, done=already_done + done),
        )
    except Exception as error:
        with transaction.atomic():  # whoever sees it finished sees it in the history too
            finished_at = timezone.now()
            update(operation, status=BulkOperation.Status.FAILED, finished_at=finished_at, error=str(error))
            record_in_history(
                operation.user_id, operation.action, operation.done, f"{operation.description}; then failed"
            )
        raise
    with transaction.atomic():
        update(operation, status=BulkOperation.Status.DONE, done=count, finished_at=timezone.now())
        record_in_history(operation.user_id, operation.action, count, operation.description)


def update(operation: BulkOperation, **fields) -> None:
    for name, value in fields.items():
        setattr(operation, name, value)
    BulkOperation.objects.filter(pk=operation.pk).update(**fields)


def recent_history(limit: int = 10) -> QuerySet[LogEntry]:
    """The latest actions on failed jobs in the admin's history, with who did them."""
    content_type = ContentType.objects.get_for_model(FailedJob)
    return (
        LogEntry.objects.filter(content_type=content_type)
        .select_related("user")
        .order_by("-action_time")[:limit]
    )

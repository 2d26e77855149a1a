"""Everything done with failed jobs: record, find, retry, delete, purge, and recover from Redis.

The middleware, synchronous runs, the admin actions, the management commands and the periodic jobs
all call these functions. They know nothing of what the messages do: apps that care about their own
messages listen to the signals in signals.py.
"""

import hashlib
import logging
import re
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import dramatiq
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from dramatiq import Message
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import q_name, xq_name
from redis import Redis

from . import dispatch
from .conf import setting
from .models import Alert, BulkOperation, FailedJob
from .signals import job_failed, jobs_retried
from .signatures import error_code, error_signature

logger = logging.getLogger(__name__)

#: What the middleware hands over (a proxy) or a synchronous run has (the message itself).
AnyMessage = Message[Any] | MessageProxy

#: Message options that belong to one run of a message, not to the message itself.
RUNTIME_OPTIONS = {
    "retries",
    "traceback",
    "requeue_timestamp",
    "redis_message_id",
    "eta",
    "attempts",
    "error",
}
DEFAULT_BATCH_SIZE = 1000
MAX_MESSAGE_CHARS = 10_000
SURROGATE = re.compile("[\ud800-\udfff]")
EXCEPTION_LINE = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?$")


@dataclass
class RetryResult:
    retried: int = 0
    skipped: int = 0

    def __str__(self) -> str:
        return f"retried {self.retried}, skipped {self.skipped}"


def fail_message(
    message: AnyMessage,
    exception: BaseException | None = None,
    *,
    attempts: int | None = None,
    source: str = FailedJob.Source.WORKER,
) -> int:
    """File a message that failed for good and tell the apps that listen; return the FailedJob's pk.

    The one way in for every failure: a worker's (the middleware), a synchronous run's, and one
    recovered from Redis's dead-letter queue. The row and what the listeners write commit together,
    so nobody can retry a job whose listeners have not caught up; if a listener fails, nothing is
    written and a worker's message stays in Redis's dead-letter queue until reconciled.
    """
    exception = underlying_error(exception)
    with transaction.atomic():
        job = record_failure(message, exception, attempts=attempts, source=source)
        error = f"{job.exception_class.rpartition('.')[2]}: {job.exception_message}"
        job_failed.send(sender=FailedJob, message=message, exception=exception, error=error, job_id=job.pk)
    return job.pk


def underlying_error(exception: BaseException | None) -> BaseException | None:
    """A ``dramatiq.Retry`` raised from an error is filed as that error: it says what went wrong."""
    if isinstance(exception, dramatiq.Retry) and exception.__cause__ is not None:
        return exception.__cause__
    return exception


def record_failure(
    message: AnyMessage,
    exception: BaseException | None = None,
    *,
    attempts: int | None = None,
    source: str = FailedJob.Source.WORKER,
) -> FailedJob:
    """Store a message that failed for good; recording it twice keeps the first row.

    One INSERT ... ON CONFLICT statement: a worker's failure path runs it for every failed message.
    """
    options = message.options
    kind = storable(exception_class(exception, options))
    text = storable(exception_text(exception, options)[:MAX_MESSAGE_CHARS])
    code = storable(error_code(exception, text))
    job = FailedJob(
        message_id=message.message_id,
        queue_name=q_name(message.queue_name),
        actor_name=message.actor_name,
        message_data=bytes(message.encode()),
        args=storable(list(message.args)),
        kwargs=storable(dict(message.kwargs)),
        exception_class=kind,
        exception_message=text,
        error_signature=error_signature(kind, text, code),
        error_code=code,
        traceback=storable(format_traceback(exception, options)),
        attempts=attempts or options.get("attempts") or options.get("retries", 0) + 1,
        source=source,
        enqueued_at=from_millis(message.message_timestamp),
        failed_at=timezone.now(),
    )
    # The no-op update makes the database return the pk of the row that was there first.
    [job] = FailedJob.objects.bulk_create(
        [job], update_conflicts=True, unique_fields=["message_id"], update_fields=["message_id"]
    )
    logger.warning(
        "Message %s (%s) failed for good; kept as failed job %s.", job.message_id, job.actor_name, job.pk
    )
    return job


def storable(value: Any) -> Any:
    """The value with text the database can store: every failure gets its row, whatever it carries.

    PostgreSQL refuses NUL characters and lone surrogates, in text and in jsonb alike; they become
    U+FFFD. The whole message is kept unchanged in message_data, so a retry sends exactly it.
    """
    if isinstance(value, str):
        value = value.replace("\x00", "\ufffd")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = SURROGATE.sub("\ufffd", value)
        return value
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable(item) for item in value]
    return value


def exception_class(exception: BaseException | None, options: dict) -> str:
    if exception is None:
        return recorded_error(options)[0]
    kind = type(exception)
    return f"{kind.__module__}.{kind.__qualname__}"


def exception_text(exception: BaseException | None, options: dict) -> str:
    if exception is None:
        return recorded_error(options)[1]
    return str(exception)


def recorded_error(options: dict) -> tuple[str, str]:
    """(class, message) of a message's last error, from what the message carries.

    A message recovered from Redis carries the one line FailedJobMiddleware kept of its last error
    (with the error a ``dramatiq.Retry`` was raised from), and, if it was retried, the traceback.
    """
    if options.get("error"):
        name, _, text = options["error"].partition(": ")
        return name, text
    return error_in_traceback(options.get("traceback", ""))


def error_in_traceback(text: str) -> tuple[str, str]:
    """(class, message) of the last exception in a formatted traceback.

    A message recovered from Redis carries its error only as the traceback of its last retry.
    """
    lines = text.rstrip().splitlines()
    for index in range(len(lines) - 1, -1, -1):
        match = EXCEPTION_LINE.match(lines[index])
        if match:
            rest = [match["message"] or "", *lines[index + 1 :]]
            return match["name"], "\n".join(rest).strip()
    return "", ""


def format_traceback(exception: BaseException | None, options: dict) -> str:
    """Retries formatted the last attempt's traceback when it counted it as a retry (not ``throws``)."""
    formatted_by_retries = "traceback" in options and options.get("retries") == options.get("attempts")
    if exception is not None and exception.__traceback__ is not None and not formatted_by_retries:
        return "".join(traceback.format_exception(exception, limit=30))
    return options.get("traceback", "")


def from_millis(timestamp: int | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp / 1000, tz=UTC) if timestamp else None


def filter_jobs(
    *,
    ids: list[int] | None = None,
    queue: str | None = None,
    actor: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    signature: str | None = None,
    code: str | None = None,
) -> QuerySet[FailedJob]:
    jobs = FailedJob.objects.all()
    if signature:
        jobs = jobs.filter(error_signature=signature)
    if code:
        jobs = jobs.filter(error_code=code)
    if ids:
        jobs = jobs.filter(pk__in=ids)
    if queue:
        jobs = jobs.filter(queue_name=queue)
    if actor:
        jobs = jobs.filter(actor_name=actor)
    if status:
        jobs = jobs.filter(status=status)
    if since:
        jobs = jobs.filter(failed_at__gte=since)
    if until:
        jobs = jobs.filter(failed_at__lt=until)
    return jobs


def retry_jobs(
    jobs: QuerySet[FailedJob],
    *,
    limit: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> RetryResult:
    """Send each failed job's message again, with fresh retries, and mark the row retried.

    Rows that are not in the failed state (already retried or resolved) are skipped. ``progress`` is
    called with how many were retried so far after each batch.
    """
    result = RetryResult(skipped=jobs.exclude(status=FailedJob.Status.FAILED).count())
    pending = jobs.filter(status=FailedJob.Status.FAILED).order_by("pk")
    if dry_run:
        result.retried = pending.count() if limit is None else min(limit, pending.count())
        return result
    # A retry run synchronously can fail again and add rows; they are not part of this run.
    last_pk, newest_pk = 0, FailedJob.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    if not dispatch.queue_available():
        batch_size = 1  # each message runs here, after its own job is marked: see retry_batch
    while limit is None or result.retried < limit:
        size = batch_size if limit is None else min(batch_size, limit - result.retried)
        batch = pending.filter(pk__gt=last_pk, pk__lte=newest_pk).values("pk")[:size]
        retried, highest_pk = retry_batch(batch)
        if not retried or highest_pk is None:
            break
        result.retried += retried
        last_pk = highest_pk
        if progress is not None:
            progress(result.retried)
    return result


def retry_batch(batch: QuerySet) -> tuple[int, int | None]:
    """Mark a batch retried and send fresh copies of its messages; return (how many, the highest pk).

    The messages go to the broker before the transaction commits: if this process dies in between,
    the rows stay failed and can be retried again, and the retry's id is derived from the row (see
    new_message_id), so a second copy has the same id as the first.

    Messages that must run here (the queue is off, or the broker unreachable) run after the commit,
    never inside the transaction: a rollback would forget that the provider was called, and the next
    retry would send again.
    """
    with transaction.atomic():
        rows = FailedJob.objects.mark_retried(batch)
        if not rows:
            return 0, None
        messages = [fresh_copy(Message.decode(bytes(data)), retried_as) for _, retried_as, data in rows]
        jobs_retried.send(sender=FailedJob, messages=messages)
        to_run_here = dispatch.enqueue_many(messages)
    for message in to_run_here:
        dispatch.run_now(message)
    return len(rows), max((pk for pk, _, _ in rows), default=None)


def new_message_id(job: FailedJob) -> str:
    """The id of a job's next retry, derived from its message id and retry number.

    The database computes the same value (see FailedJobQuerySet.mark_retried), so a whole batch is
    marked with one UPDATE instead of one per row.
    """
    return hashlib.md5(f"{job.message_id}/{job.retry_count + 1}".encode()).hexdigest()


def add_runtime_options(*names: str) -> None:
    """Declare options that an app's middleware or actors set for one run of a message: a retried
    job starts without them."""
    RUNTIME_OPTIONS.update(names)


def fresh_copy(message: Message, message_id: str) -> Message:
    """The same message under a new id, as if just enqueued: no retries counted, no old traceback."""
    return Message(
        queue_name=q_name(message.queue_name),
        actor_name=message.actor_name,
        args=message.args,
        kwargs=message.kwargs,
        options={key: value for key, value in message.options.items() if key not in RUNTIME_OPTIONS},
        message_id=message_id,
        message_timestamp=int(timezone.now().timestamp() * 1000),
    )


def resolve_jobs(
    jobs: QuerySet[FailedJob],
    *,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Mark failed jobs handled without a retry (for instance, delivered after all). Returns how many.

    With a ``batch_size``, each batch commits on its own and ``progress`` hears how many so far.
    """
    pending = jobs.filter(status=FailedJob.Status.FAILED)
    if batch_size is None:
        return pending.update(status=FailedJob.Status.RESOLVED)
    resolved = 0
    for pks in pk_batches(pending, batch_size):
        resolved += FailedJob.objects.filter(pk__in=pks, status=FailedJob.Status.FAILED).update(
            status=FailedJob.Status.RESOLVED
        )
        if progress is not None:
            progress(resolved)
    return resolved


def delete_jobs(
    jobs: QuerySet[FailedJob],
    *,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Delete failed jobs; with a ``batch_size``, as resolve_jobs, one committed batch at a time."""
    if batch_size is None:
        deleted, _ = jobs.delete()
        return deleted
    total = 0
    for pks in pk_batches(jobs, batch_size):
        deleted, _ = FailedJob.objects.filter(pk__in=pks).delete()
        total += deleted
        if progress is not None:
            progress(total)
    return total


def pk_batches(jobs: QuerySet[FailedJob], batch_size: int) -> Iterator[list[int]]:
    """The pks of ``jobs`` in ascending batches, each read after the previous one was acted on."""
    last_pk = 0
    while True:
        pks = list(jobs.filter(pk__gt=last_pk).order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not pks:
            return
        yield pks
        last_pk = pks[-1]


def purge_old_jobs(
    *,
    days: int | None = None,
    done_days: int | None = None,
    now: datetime | None = None,
    include_recent_unhandled: bool = False,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Delete failed jobs older than ``days``, and retried or resolved ones older than ``done_days``.

    A failure nobody has handled yet is kept for FAILED_JOBS_RETENTION_DAYS at least, whatever
    ``days`` says, unless ``include_recent_unhandled``. Returns how many were (or, in a dry run, would
    be) deleted. Rows go ``batch_size`` at a time, each batch in its own transaction; ``progress`` is
    called with the number deleted so far after each.
    """
    now = now or timezone.now()
    retention = setting("FAILED_JOBS_RETENTION_DAYS")
    days = retention if days is None else days
    done_days = setting("FAILED_JOBS_DONE_RETENTION_DAYS") if done_days is None else done_days
    if days < 0 or done_days < 0:
        raise ValueError("Retention periods are a number of days, 0 or more.")
    unhandled_days = days if include_recent_unhandled else max(days, retention)
    unhandled = FailedJob.objects.filter(
        status=FailedJob.Status.FAILED, failed_at__lt=now - timedelta(days=unhandled_days)
    )
    handled = FailedJob.objects.filter(
        status__in=[FailedJob.Status.RETRIED, FailedJob.Status.RESOLVED],
        failed_at__lt=now - timedelta(days=min(days, done_days)),
    )
    if dry_run:
        return unhandled.count() + handled.count()
    deleted = delete_jobs(unhandled, batch_size=batch_size, progress=progress)

    def handled_progress(done: int) -> None:
        if progress is not None:
            progress(deleted + done)

    deleted += delete_jobs(handled, batch_size=batch_size, progress=handled_progress)
    purge_bookkeeping(now - timedelta(days=done_days))
    return deleted


def purge_bookkeeping(before: datetime) -> None:
    """Forget finished bulk operations, and alerts last sent, before then (they are not failed jobs)."""
    finished = [BulkOperation.Status.DONE, BulkOperation.Status.FAILED]
    BulkOperation.objects.filter(status__in=finished, finished_at__lt=before).delete()
    Alert.objects.filter(last_sent_at__lt=before).delete()


def forget_dead_letter(broker: dramatiq.Broker, message: AnyMessage) -> None:
    """Drop a message from Redis's dead-letter queue once it is safe in the database."""
    redis_id = message.options.get("redis_message_id")
    client = getattr(broker, "client", None)
    if redis_id is None or client is None:
        return
    key = f"{getattr(broker, 'namespace', 'dramatiq')}:{xq_name(q_name(message.queue_name))}"
    pipe = client.pipeline(transaction=False)
    pipe.zrem(key, redis_id)
    pipe.hdel(f"{key}.msgs", redis_id)
    pipe.execute()


@dataclass
class ReconcileResult:
    recovered: int = 0
    unreadable: int = 0

    def __str__(self) -> str:
        text = f"recovered {self.recovered}"
        if self.unreadable:
            text += f"; {self.unreadable} could not be recovered and stay in Redis (see the log)"
        return text


def reconcile_dead_letters(
    broker: RedisBroker | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> ReconcileResult:
    """File every message in Redis's dead-letter queues that is not in FailedJob yet.

    Catches the failures whose recording failed (the database was down). An entry that cannot be
    read or filed is logged and left in Redis; the others are recovered all the same. ``progress``
    is called with the number recovered so far after each batch.
    """
    broker = broker or cast(RedisBroker, dramatiq.get_broker())
    result = ReconcileResult()
    for key in broker.client.scan_iter(match=f"{broker.namespace}:*.XQ", count=1000):
        reconcile_queue(broker.client, key.decode(), batch_size, result, progress)
    return result


def reconcile_queue(
    client: Redis,
    key: str,
    batch_size: int,
    result: ReconcileResult,
    progress: Callable[[int], None] | None = None,
) -> None:
    left_behind = 0  # entries that could not be recovered stay at the head of the sorted set
    while True:
        redis_ids = cast(list[bytes], client.zrange(key, left_behind, left_behind + batch_size - 1))
        if not redis_ids:
            return
        blobs = client.hmget(f"{key}.msgs", redis_ids)
        messages = {}
        for redis_id, blob in zip(redis_ids, blobs, strict=True):
            message = read_dead_letter(key, redis_id, blob)
            if message is not None:
                messages[redis_id] = message
        done = [redis_id for redis_id, blob in zip(redis_ids, blobs, strict=True) if blob is None]
        done += file_dead_letters(key, messages, result)
        left_behind += len(redis_ids) - len(done)
        result.unreadable += len(redis_ids) - len(done)
        if done:
            pipe = client.pipeline(transaction=False)
            pipe.zrem(key, *done)
            pipe.hdel(f"{key}.msgs", *done)
            pipe.execute()
        if progress is not None:
            progress(result.recovered)


def read_dead_letter(key: str, redis_id: bytes, blob: bytes | str | None) -> Message | None:
    if blob is None:
        return None  # its body is gone: nothing to recover
    try:
        return Message.decode(blob.encode() if isinstance(blob, str) else blob)
    except Exception:
        logger.exception("Dead letter %s in %s cannot be decoded; it stays in Redis.", redis_id, key)
        return None


def file_dead_letters(key: str, messages: dict[bytes, Message], result: ReconcileResult) -> list[bytes]:
    """File the messages not in FailedJob yet; return the Redis ids of those that are now safe."""
    known = set(
        FailedJob.objects.filter(message_id__in=[m.message_id for m in messages.values()]).values_list(
            "message_id", flat=True
        )
    )
    done = []
    for redis_id, message in messages.items():
        if message.message_id not in known:
            try:
                fail_message(message, source=FailedJob.Source.RECONCILED)
            except Exception:
                logger.exception("Could not file dead letter %s from %s; it stays in Redis.", redis_id, key)
                continue
            result.recovered += 1
        done.append(redis_id)
    return done

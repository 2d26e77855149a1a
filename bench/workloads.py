"""The workloads. Each function returns the JSON lines it measured, as dicts; extra figures for the
human table go under the ``info`` key (not printed in the JSON line).
"""

import hashlib
import statistics
import time
import uuid
from itertools import islice
from urllib.parse import urlencode

from bench.harness import (
    ADMIN_DATABASE,
    BARE_DRAMATIQ,
    OUTBOX_DATABASE,
    ROOT,
    RUNDRAMATIQ,
    Worker,
    bench_env,
    bench_user,
    empty_tables,
    flush_redis,
    percentile,
    sleep_until,
    using_database,
    wait_for_count,
)

PACED_RATE = 200
ADMIN_REQUESTS = 5
INSERT_BATCH = 5000
#: W8's rows carry this template, so that rows the service wrote (W8-call's) can be told apart.
OUTBOX_TEMPLATE = "bench-w8"
#: W8's due deliveries: every OUTBOX_DUE_STEP-th row among the most recent ones.
OUTBOX_DUE_STEP = 10
#: W8's deliveries scheduled ahead, not due: every 50th row of the most recent half (1% of the table).
OUTBOX_AHEAD_STEP = 50
#: The indexes W8 drops (in a transaction rolled back) to show the due query's plan without them: the
#: dispatcher's own, then also the one that leads with the status.
OUTBOX_WITHOUT = {
    "without_delivery_due": ["delivery_due"],
    "without_status_indexes": ["delivery_due", "delivery_status_created"],
}
#: W8-call: calls of each kind made first and not measured (connections, caches).
CALL_WARM_UP = 50


def w1(n, paced_calls):
    """Enqueue n in-app notifications with no worker, drain them, then measure paced end-to-end latency."""
    from notifications.models import Delivery, InAppNotification
    from notifications.services import NotificationsService

    empty_tables(Delivery, InAppNotification)
    flush_redis()
    service, user = NotificationsService(), bench_user()
    enqueue_s, latencies = enqueue_in_app(service, user, n)
    with Worker(RUNDRAMATIQ, bench_env(), "w1-worker.log") as worker:
        boot_s, drain_s, cpu_ms = timed_drain(worker, InAppNotification.objects.count, n)
        e2e = paced_latencies(service, user, worker, paced_calls, PACED_RATE)
    return [
        {
            "workload": "W1",
            "n": n,
            "enqueue_s": round(enqueue_s, 3),
            "enqueue_p50_ms": round(percentile(latencies, 0.50) * 1000, 3),
            "enqueue_p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
            "worker_boot_s": round(boot_s, 3),
            "drain_s": round(drain_s, 3),
            "jobs_per_s": round(n / (drain_s - boot_s)),
            "e2e_p50_ms": round(percentile(e2e, 0.50), 2),
            "e2e_p99_ms": round(percentile(e2e, 0.99), 2),
            "info": {"worker_cpu_ms_per_job": cpu_ms},
        }
    ]


def timed_drain(worker, count, n, started=None):
    """Wait for ``count()`` to reach n. Return (seconds until work started, seconds until done, worker CPU
    ms a job after work started). Work has started when ``started()`` (default: count()) is above 0.
    """
    boot_s = wait_for_count(started or count, 1, worker)
    cpu_at_boot, done_at_boot = worker.cpu_seconds(), count()
    drain_s = wait_for_count(count, n, worker)
    cpu_ms = (worker.cpu_seconds() - cpu_at_boot) * 1000 / max(1, n - done_at_boot)
    return boot_s, drain_s, round(cpu_ms, 2)


def enqueue_in_app(service, user, n):
    """Call the service n times in a row; return the total time and each call's time, in seconds."""
    latencies = []
    started = time.perf_counter()
    for i in range(n):
        before = time.perf_counter()
        service.create_inapp_notification(user, title=f"Bench notification {i}")
        latencies.append(time.perf_counter() - before)
    return time.perf_counter() - started, latencies


def paced_latencies(service, user, worker, count, rate):
    """Call the service ``rate`` times a second; return each notification's end-to-end time in ms."""
    from notifications.models import InAppNotification

    started_at = {}
    started = time.perf_counter()
    for i in range(count):
        sleep_until(started + i / rate)
        call_started = time.time()
        delivery = service.create_inapp_notification(user, title=f"Paced notification {i}")
        started_at[delivery.pk] = call_started
    rows = InAppNotification.objects.filter(delivery_id__in=list(started_at))
    wait_for_count(rows.count, count, worker)
    return [
        (created_at.timestamp() - started_at[delivery_id]) * 1000
        for delivery_id, created_at in rows.values_list("delivery_id", "created_at")
    ]


def w1_bare(n):
    """The same inserts by a bare actor (no Delivery row, no service): the ceiling for W1's drain."""
    from bench.bare_actors import insert_in_app
    from notifications.models import Delivery, InAppNotification

    empty_tables(Delivery, InAppNotification)
    flush_redis()
    user = bench_user()
    for i in range(n):
        insert_in_app.send(user.pk, f"Bare notification {i}")
    return [bare_drain("W1-bare", n, InAppNotification.objects.count)]


def w1_noop(n):
    """A bare actor that does nothing: what Dramatiq and Redis alone cost, the ceiling of any drain."""
    import dramatiq

    from bench.bare_actors import do_nothing

    flush_redis()
    broker = dramatiq.get_broker()
    broker.enqueue_many([do_nothing.message(i) for i in range(n)])
    unacked = f"dramatiq:{do_nothing.queue_name}.msgs"
    return [bare_drain("W1-noop", n, lambda: n - broker.client.hlen(unacked))]


def bare_drain(workload, n, count):
    """Drain n queued messages with the bare worker, until count() reaches n."""
    with Worker(BARE_DRAMATIQ, bench_env(PYTHONPATH=ROOT), f"{workload.lower()}-worker.log") as worker:
        boot_s, drain_s, cpu_ms = timed_drain(worker, count, n)
    return {
        "workload": workload,
        "n": n,
        "drain_s": round(drain_s, 3),
        "jobs_per_s": round(n / (drain_s - boot_s)),
        "info": {"worker_boot_s": round(boot_s, 3), "worker_cpu_ms_per_job": cpu_ms},
    }


def w2(n):
    """n SMS that Twilio always refuses with a 500: each is tried 3 times, then filed as a FailedJob.

    Timed as the peers' W2 is: the worker running and warm, from the first send to the last failed
    job written. Breakers off, so that every attempt goes through. Then, in the same run, n SMS that
    Twilio accepts: the CPU a failed attempt costs the worker against a sent message's.
    """
    from failedjobs.models import FailedJob
    from notifications.models import Delivery
    from tests.fakes.twilio_server import FakeTwilio

    empty_tables(Delivery, FailedJob)
    flush_redis()
    twilio = FakeTwilio().start()
    try:
        twilio.fail_always(500, 20500)
        env = bench_env(
            NOTIFICATIONS_MAX_RETRIES=2,
            NOTIFICATIONS_MIN_BACKOFF_MS=10,
            NOTIFICATIONS_MAX_BACKOFF_MS=50,
            NOTIFICATIONS_BREAKER_THRESHOLD=0,
            TWILIO_API_BASE_URL=twilio.url,
        )
        with Worker(RUNDRAMATIQ, env, "w2-worker.log") as worker:
            warm_up(worker)
            cpu_before = worker.cpu_seconds()
            first_send = time.time()
            enqueue_s = enqueue_sms(n, "Storm")
            wait_for_count(FailedJob.objects.count, n, worker)
            cpu_ms = (worker.cpu_seconds() - cpu_before) * 1000 / n
        storm_s = last_failed_at(FailedJob) - first_send
        requests = twilio.requests_seen
        twilio.reset()
        empty_tables(Delivery)
        enqueue_sms(n, "Accepted")
        sent = Delivery.objects.filter(status=Delivery.Status.SENT).count
        with Worker(RUNDRAMATIQ, env, "w2-ok-worker.log") as worker:
            _, sent_s, sent_cpu_ms = timed_drain(worker, sent, n)
    finally:
        twilio.stop()
    cpu_ms_per_attempt = cpu_ms * n / max(1, requests)
    return [
        {
            "workload": "W2",
            "n": n,
            "failed_jobs": FailedJob.objects.count(),
            "storm_s": round(storm_s, 3),
            "enqueue_s": round(enqueue_s, 3),
            "cpu_ms_per_failed_attempt": round(cpu_ms_per_attempt, 3),
            "cpu_ms_per_sent": sent_cpu_ms,
            "failed_attempt_to_sent_cpu": round(cpu_ms_per_attempt / max(sent_cpu_ms, 0.001), 2),
            "info": {
                "twilio_requests": requests,
                "worker_cpu_ms_per_message": round(cpu_ms, 2),
                "sent_drain_s": round(sent_s, 3),
            },
        }
    ]


def warm_up(worker, count=16):
    """Wait for a worker to run, and warm it (connections, caches) with a few in-app notifications."""
    from notifications.models import InAppNotification
    from notifications.services import NotificationsService

    service, user = NotificationsService(), bench_user()
    before = InAppNotification.objects.count()
    for i in range(count):
        service.create_inapp_notification(user, title=f"Warm-up {i}")
    wait_for_count(InAppNotification.objects.count, before + count, worker)


def last_failed_at(model):
    """The time (epoch seconds, the database's clock) the last failed job was written."""
    from django.db.models import Max

    return model.objects.aggregate(last=Max("failed_at"))["last"].timestamp()


def enqueue_sms(n, text):
    """Call send_sms n times; return the seconds it took."""
    from notifications.services import NotificationsService

    service = NotificationsService()
    started = time.perf_counter()
    for i in range(n):
        service.send_sms("+33612345678", text=f"{text} {i}")
    return time.perf_counter() - started


def w5_w6(n_sms, n_in_app, outage_s, probe_s):
    """W5: in-app notifications drain while every SMS fails (Twilio answering 500), against the same
    drain alone, before and after; the Twilio requests of an outage of ``outage_s`` with n_sms
    queued. W6: once Twilio is back, the time until every SMS is sent, with no operator action.
    """
    from failedjobs.models import FailedJob
    from notifications.models import Delivery, InAppNotification
    from notifications.services import NotificationsService
    from tests.fakes.twilio_server import FakeTwilio

    service, user = NotificationsService(), bench_user()
    twilio = FakeTwilio().start()
    env = bench_env(NOTIFICATIONS_BREAKER_OPEN_S=probe_s, TWILIO_API_BASE_URL=twilio.url)
    try:
        alone_before, cpu_before = in_app_drain_rate(service, user, n_in_app, env, "w5-alone")
        empty_tables(Delivery, InAppNotification, FailedJob)
        flush_redis()
        twilio.fail_always(500, 20500)
        enqueue_sms(n_sms, "Outage")
        enqueue_in_app(service, user, n_in_app)
        with Worker(RUNDRAMATIQ, env, "w5-storm-worker.log") as worker:
            during, cpu_during = drain_rate(worker, n_in_app)
            sleep_until(worker.started_at + outage_s)
            requests, failed = twilio.requests_seen, FailedJob.objects.count()
            twilio.reset()
            back = time.perf_counter()
            sent = Delivery.objects.filter(channel="sms", status=Delivery.Status.SENT).count
            first_sent_s = wait_for_count(sent, 1, worker) - (back - worker.started_at)
            recovery_s = wait_for_count(sent, n_sms, worker) - (back - worker.started_at)
        attempts = sum(Delivery.objects.filter(channel="sms").values_list("attempts", flat=True))
        alone_after, cpu_after = in_app_drain_rate(service, user, n_in_app, env, "w5-alone-after")
    finally:
        twilio.stop()
    alone, cpu_alone = (alone_before + alone_after) / 2, (cpu_before + cpu_after) / 2
    return [
        {
            "workload": "W5",
            "n": n_sms,
            "in_app_n": n_in_app,
            "in_app_alone_per_s": round(alone),
            "in_app_during_storm_per_s": round(during),
            "storm_to_alone": round(during / alone, 2),
            "cpu_ms_per_in_app_alone": round(cpu_alone, 3),
            "cpu_ms_per_in_app_during_storm": round(cpu_during, 3),
            "storm_to_alone_by_cpu": round(cpu_alone / max(cpu_during, 0.001), 2),
            "outage_s": outage_s,
            "probe_interval_s": probe_s,
            "twilio_requests_in_outage": requests,
            "failed_jobs_in_outage": failed,
            "info": {
                "alone_before_per_s": round(alone_before),
                "alone_after_per_s": round(alone_after),
                "cpu_ms_alone_before": cpu_before,
                "cpu_ms_alone_after": cpu_after,
            },
        },
        {
            "workload": "W6",
            "n": n_sms,
            "probe_interval_s": probe_s,
            "first_sent_after_s": round(first_sent_s, 3),
            "recovery_s": round(recovery_s, 3),
            "failed_jobs": FailedJob.objects.count(),
            "info": {"sms_attempts": attempts, "drain_after_first_s": round(recovery_s - first_sent_s, 3)},
        },
    ]


def w5_hold(n):
    """n SMS with the Twilio breaker forced open: the worker's CPU for holding each one (one a period
    waits in Redis to carry the probe, the others are held in the database). On Dramatiq's own broker:
    with the speed-ups, the worker would not take them at all."""
    import dramatiq

    from notifications import breaker
    from notifications.models import Delivery

    empty_tables(Delivery)
    flush_redis()
    enqueue_sms(n, "Held")
    client = dramatiq.get_broker().client
    breaker.get_breaker("twilio", client).force("open")
    in_database = Delivery.objects.filter(status=Delivery.Status.HELD).count
    held = lambda: client.hlen("dramatiq:sms.DQ.msgs") + in_database()  # noqa: E731
    env = bench_env(NOTIFICATIONS_BREAKER_OPEN_S=300, REDIS_BROKER_SPEEDUPS="false")
    with Worker(RUNDRAMATIQ, env, "w5-hold-worker.log") as worker:
        boot_s, held_s, cpu_ms = timed_drain(worker, held, n)
    return [
        {
            "workload": "W5-hold",
            "n": n,
            "held": held(),
            "held_in_database": in_database(),
            "cpu_ms_per_hold": cpu_ms,
            "info": {"worker_boot_s": round(boot_s, 3), "held_s": round(held_s - boot_s, 3)},
        }
    ]


def in_app_drain_rate(service, user, n, env, name):
    from failedjobs.models import FailedJob
    from notifications.models import Delivery, InAppNotification

    empty_tables(Delivery, InAppNotification, FailedJob)
    flush_redis()
    enqueue_in_app(service, user, n)
    with Worker(RUNDRAMATIQ, env, f"{name}-worker.log") as worker:
        return drain_rate(worker, n)


def drain_rate(worker, n):
    """In-app notifications a second, from the first row written to the last (rows' own times), and the
    worker's CPU ms per in-app notification over the same stretch (whatever else it did meanwhile)."""
    from django.db.models import Max, Min

    from notifications.models import InAppNotification

    _, _, cpu_ms = timed_drain(worker, InAppNotification.objects.count, n)
    span = InAppNotification.objects.aggregate(first=Min("created_at"), last=Max("created_at"))
    return (n - 1) / max((span["last"] - span["first"]).total_seconds(), 0.001), cpu_ms


def w7(n, rate):
    """A burst of n SMS with a limit of ``rate`` a second, two worker processes: the most requests the
    fake Twilio saw in any one second (sliding), and that none failed or spent a second attempt."""
    from failedjobs.models import FailedJob
    from notifications.models import Delivery
    from tests.fakes.twilio_server import FakeTwilio

    empty_tables(Delivery, FailedJob)
    flush_redis()
    enqueue_sms(n, "Burst")
    twilio = FakeTwilio().start()
    arrivals = []
    twilio.on_request = lambda: arrivals.append(time.monotonic())
    env = bench_env(NOTIFICATIONS_RATE_LIMITS=f"sms={rate}", TWILIO_API_BASE_URL=twilio.url)
    command = [*RUNDRAMATIQ[:-4], "--processes", "1", "--threads", "4"]
    sent = Delivery.objects.filter(status=Delivery.Status.SENT).count
    try:
        with Worker(command, env, "w7-worker-1.log") as first, Worker(command, env, "w7-worker-2.log"):
            first_s, drain_s, cpu_ms = timed_drain(first, sent, n)
    finally:
        twilio.stop()
    attempts = list(Delivery.objects.values_list("attempts", flat=True))
    return [
        {
            "workload": "W7",
            "n": n,
            "limit_per_s": rate,
            "max_in_any_second": most_in_any_second(arrivals),
            "twilio_requests": len(arrivals),
            "failed_jobs": FailedJob.objects.count(),
            "sent": sent(),
            "drain_s": round(drain_s - first_s, 3),
            "info": {
                "ideal_drain_s": round((n - rate) / rate, 1),
                "max_attempts": max(attempts),
                "first_worker_cpu_ms_per_message": cpu_ms,
            },
        }
    ]


def most_in_any_second(times):
    """The most events in any one-second window, the window starting at each event."""
    times = sorted(times)
    most, end = 0, 0
    for start, moment in enumerate(times):
        while end < len(times) and times[end] < moment + 1.0:
            end += 1
        most = max(most, end - start)
    return most


def w2_bare(n):
    """n messages of a bare actor that raises at once, with W2's retries: the dead-letter path alone.
    Timed as W2, the worker running and warm."""
    import dramatiq

    from bench.bare_actors import always_fails, do_nothing
    from failedjobs.models import FailedJob

    empty_tables(FailedJob)
    flush_redis()
    client = dramatiq.get_broker().client
    with Worker(BARE_DRAMATIQ, bench_env(PYTHONPATH=ROOT), "w2-bare-worker.log") as worker:
        for i in range(16):
            do_nothing.send(i)
        wait_for_count(lambda: 16 - client.llen("dramatiq:bench_noop"), 16, worker)
        cpu_before = worker.cpu_seconds()
        first_send = time.time()
        for i in range(n):
            always_fails.send(i)
        wait_for_count(FailedJob.objects.count, n, worker)
        cpu_ms = (worker.cpu_seconds() - cpu_before) * 1000 / n
    return [
        {
            "workload": "W2-bare",
            "n": n,
            "failed_jobs": FailedJob.objects.count(),
            "storm_s": round(last_failed_at(FailedJob) - first_send, 3),
            "info": {"worker_cpu_ms_per_message": round(cpu_ms, 2)},
        }
    ]


def w3(sizes):
    """Re-enqueue every FailedJob with retry_jobs(), no worker running, once per size."""
    return [retry_all(n) for n in sizes]


def retry_all(n):
    import dramatiq

    from failedjobs.models import FailedJob
    from failedjobs.services import retry_jobs

    empty_tables(FailedJob)
    flush_redis()
    create_failed_jobs(n)
    started = time.perf_counter()
    result = retry_jobs(FailedJob.objects.all())
    requeue_s = time.perf_counter() - started
    queued = dramatiq.get_broker().client.hlen("dramatiq:in_app.msgs")
    if result.retried != n or queued != n:
        raise RuntimeError(f"retry_jobs retried {result.retried} and queued {queued}, expected {n}")
    return {"workload": "W3", "n": n, "requeue_s": round(requeue_s, 3), "per_s": round(n / requeue_s)}


def create_failed_jobs(n):
    from django.utils import timezone

    from failedjobs.models import FailedJob
    from notifications.tasks import ACTORS

    now = timezone.now()
    jobs = (failed_in_app_job(ACTORS["in_app"], i, now) for i in range(n))
    while batch := list(islice(jobs, INSERT_BATCH)):
        FailedJob.objects.bulk_create(batch)


def failed_in_app_job(actor, i, now):
    """A FailedJob holding a real encoded message of the in-app actor."""
    from failedjobs.models import FailedJob

    payload = {
        "channel": "in_app",
        "recipient": "1",
        "template": "in_app",
        "context": {"title": f"Retried notification {i}", "body": "", "link": ""},
        "language": "en",
        "delivery_id": i + 1,
    }
    message = actor.message(**payload)
    return FailedJob(
        queue_name=message.queue_name,
        actor_name=message.actor_name,
        message_id=message.message_id,
        message_data=message.encode(),
        kwargs=payload,
        exception_class="notifications.exceptions.TransientDeliveryError",
        exception_message="Could not store the notification.",
        attempts=6,
        enqueued_at=now,
        failed_at=now,
    )


def w4(n, *, reset=False):
    """The FailedJob admin on n rows: list, filtered list, search by message id, one detail page."""
    from failedjobs.models import FailedJob

    with using_database(ADMIN_DATABASE):
        admin_label = failed_job_admin()
        if reset or FailedJob.objects.count() != n:
            fill_failed_jobs(n)
        analyze_failed_jobs()
        client = admin_client()
        message_id = fake_message_id(n // 2)
        job = FailedJob.objects.get(message_id=message_id)
        pages = {
            "changelist": changelist_url(),
            "changelist_filtered": changelist_url() + "?queue_name__exact=sms&status__exact=failed",
            "search": changelist_url() + f"?q={message_id}",
            "detail": change_url(job.pk),
            "recipient_search": changelist_url() + "?" + urlencode({"q": job.kwargs["recipient"]}),
            "groups": changelist_url() + "groups/",
        }
        line = {"workload": "W4", "n": n, "admin": admin_label}
        for name, url in pages.items():
            cold_ms, warm_ms = time_page(client, url)
            line[f"{name}_ms"] = warm_ms
            line[f"{name}_cold_ms"] = cold_ms
    return [line]


def failed_job_admin():
    """Which admin W4 measures: the project's, or a plain stand-in when failedjobs/admin.py has none."""
    from django.contrib import admin

    from failedjobs.models import FailedJob

    if admin.site.is_registered(FailedJob):
        return "failedjobs.admin"
    admin.site.register(FailedJob)
    return "STAND-IN plain ModelAdmin (failedjobs/admin.py registers none)"


FILL_SQL = """
INSERT INTO failedjobs_failedjob (
    queue_name, actor_name, message_id, message_data, args, kwargs, exception_class, exception_message,
    error_signature, error_code,
    traceback, attempts, source, enqueued_at, failed_at, status, retried_at, retried_as, retry_count
)
SELECT
    queue, 'deliver_' || queue, message_id,
    convert_to(
        format('{"queue_name":"%%s","actor_name":"deliver_%%s","args":[],"kwargs":{"delivery_id":%%s},'
               '"options":{},"message_id":"%%s","message_timestamp":0}', queue, queue, i, message_id),
        'UTF8'
    ),
    '[]'::jsonb,
    jsonb_build_object('channel', queue, 'recipient', recipient, 'template', 'plain', 'language', 'en',
                       'context', jsonb_build_object('text', 'Your code is ' || i %% 10000),
                       'delivery_id', i),
    error_class, error,
    -- What failedjobs.signatures.error_signature makes of these texts, which hold no ids.
    error_class || ': ' || regexp_replace(error, '[0-9]+', '<n>', 'g'), '',
    E'Traceback (most recent call last):\n  File "notifications/delivery.py", line 41, in deliver\n'
        || error_class || ': ' || error,
    CASE WHEN error_class LIKE '%%Permanent%%' THEN 1 ELSE 6 END,
    'worker', failed_at - interval '31 minutes', failed_at, status,
    CASE WHEN status = 'retried' THEN failed_at + interval '1 hour' END,
    CASE WHEN status = 'retried' THEN md5('retried' || i)::uuid::text ELSE '' END,
    CASE WHEN status = 'retried' THEN 1 ELSE 0 END
FROM (
    SELECT
        i, queue, md5(i::text)::uuid::text AS message_id,
        now() - make_interval(secs => (%(n)s - i) * 7776000.0 / %(n)s) AS failed_at,
        CASE queue
            WHEN 'email' THEN 'user' || i || '@example.com'
            WHEN 'in_app' THEN (i %% 5000)::text
            ELSE '+336' || lpad((i %% 100000000)::text, 8, '0')
        END AS recipient,
        CASE
            WHEN queue = 'email' THEN 'notifications.exceptions.TransientDeliveryError'
            WHEN queue = 'in_app' OR abs(hashtext('e' || i)) %% 100 < 30
                THEN 'notifications.exceptions.PermanentDeliveryError'
            ELSE 'notifications.exceptions.TransientDeliveryError'
        END AS error_class,
        CASE
            WHEN queue = 'email' THEN 'SMTP delivery failed: (421, b''Service not available'')'
            WHEN queue = 'in_app' THEN 'Cannot store the notification: user does not exist'
            WHEN abs(hashtext('e' || i)) %% 100 < 30
                THEN 'Twilio refused the message: The ''To'' number is not a valid phone number.'
            ELSE 'Twilio refused the message: Service unavailable'
        END AS error,
        CASE
            WHEN abs(hashtext('s' || i)) %% 100 < 85 THEN 'failed'
            WHEN abs(hashtext('s' || i)) %% 100 < 97 THEN 'retried'
            ELSE 'resolved'
        END AS status
    FROM generate_series(1, %(n)s) AS i,
        LATERAL (SELECT (ARRAY['email', 'email', 'email', 'email', 'email', 'sms', 'sms', 'sms',
                               'whatsapp', 'in_app'])[1 + i %% 10] AS queue) AS queues
) AS rows
"""


def fill_failed_jobs(n):
    """n realistic FailedJob rows in one INSERT ... SELECT generate_series: half email, 30% SMS, ..."""
    from django.db import connection

    from failedjobs.models import FailedJob

    print(f"W4: building {n} FailedJob rows (once; --reset rebuilds)...", flush=True)
    empty_tables(FailedJob)
    with connection.cursor() as cursor:
        cursor.execute(FILL_SQL, {"n": n})
        cursor.execute("VACUUM failedjobs_failedjob")


def analyze_failed_jobs():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE failedjobs_failedjob")


def fake_message_id(i):
    """The message id FILL_SQL gives row i: md5(i) as a UUID."""
    return str(uuid.UUID(hashlib.md5(str(i).encode()).hexdigest()))


def admin_client():
    from django.contrib.auth import get_user_model
    from django.test import Client

    users = get_user_model().objects
    user = users.filter(username="bench-admin").first()
    if user is None:
        user = users.create_superuser("bench-admin", "bench-admin@example.com", "bench-admin")
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


def changelist_url():
    from django.urls import reverse

    return reverse("admin:failedjobs_failedjob_changelist")


def change_url(pk):
    from django.urls import reverse

    return reverse("admin:failedjobs_failedjob_change", args=[pk])


def time_page(client, url):
    """(first request in ms, median of the next ADMIN_REQUESTS in ms)."""
    timings = []
    for _ in range(ADMIN_REQUESTS + 1):
        started = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}")
    return round(timings[0], 1), round(statistics.median(timings[1:]), 1)


def w8(n, due, *, reset=False):
    """The dispatcher over n deliveries, ``due`` of them scheduled and due: time ``outbox.dispatch_due()``
    with the queue on, and EXPLAIN ANALYZE its due query, with its index and without.
    """
    import dramatiq

    from notifications import outbox

    with using_database(OUTBOX_DATABASE):
        prepare_outbox(n, due, reset=reset)
        flush_redis()
        plan = explain_due_query()
        plans_without = {name: explain_due_query(dropped) for name, dropped in OUTBOX_WITHOUT.items()}
        started = time.perf_counter()
        result = outbox.dispatch_due()
        dispatch_s = time.perf_counter() - started
        queued = dramatiq.get_broker().client.hlen("dramatiq:in_app.msgs")
    if (result.due, result.redriven, queued) != (due, 0, due):
        raise RuntimeError(f"dispatch_due: {result}, {queued} messages in Redis; expected {due} due")
    line = {
        "workload": "W8",
        "n": n,
        "due": due,
        "dispatch_s": round(dispatch_s, 3),
        "rows_per_s": round(due / dispatch_s),
        "due_query_ms": execution_ms(plan),
        "uses_delivery_due": any("delivery_due" in row for row in plan),
    }
    for name, plan_without in plans_without.items():
        line[f"due_query_{name}_ms"] = execution_ms(plan_without)
    line["plan"] = plan
    for name, plan_without in plans_without.items():
        line[f"plan_{name}"] = plan_without
    line["info"] = {"batches": -(-due // outbox.DEFAULT_BATCH_SIZE)}
    return [line]


def w8_call(calls, n, due, *, reset=False):
    """``create_inapp_notification`` on W8's table, ``calls`` times without a delay (enqueued on Redis at
    once) and ``calls`` times with ``delay=timedelta(hours=1)`` (a scheduled row), alternated.
    """
    from datetime import timedelta

    from notifications.services import NotificationsService

    with using_database(OUTBOX_DATABASE):
        prepare_outbox(n, due, reset=reset)
        flush_redis()
        service, user = NotificationsService(), bench_user()
        kinds = {"now": {}, "delayed": {"delay": timedelta(hours=1)}}
        latencies = {kind: [] for kind in kinds}
        try:
            for i in range(CALL_WARM_UP + calls):
                # Each kind goes first in every other pair, so neither always follows the other.
                for kind in sorted(kinds, reverse=i % 2 == 1):
                    before = time.perf_counter()
                    service.create_inapp_notification(user, title=f"Call {i}", **kinds[kind])
                    if i >= CALL_WARM_UP:
                        latencies[kind].append(time.perf_counter() - before)
        finally:
            remove_service_deliveries()

    def ms(kind, fraction):
        return round(percentile(latencies[kind], fraction) * 1000, 3)

    return [
        {
            "workload": "W8-call",
            "n": calls,
            "table_rows": n,
            "p50_ms": ms("now", 0.50),
            "p99_ms": ms("now", 0.99),
            "delayed_p50_ms": ms("delayed", 0.50),
            "delayed_p99_ms": ms("delayed", 0.99),
        }
    ]


OUTBOX_FILL_SQL = """
INSERT INTO notifications_delivery (
    idempotency_key, dedup_key, topic, channel, template, recipient, context, language, send_at, status,
    attempts, message_id, provider_message_id, last_error, error_code, created_at, updated_at, sent_at
)
SELECT
    '', '', '', 'in_app', %(template)s, %(recipient)s,
    jsonb_build_object('title', 'Bench notification ' || i, 'body', '', 'link', ''), 'en',
    CASE
        WHEN due THEN now() - make_interval(secs => i %% 3600)
        WHEN ahead THEN now() + make_interval(secs => 3600 + i %% 2592000)
    END,
    CASE WHEN due OR ahead THEN 'scheduled' ELSE 'sent' END,
    CASE WHEN due OR ahead THEN 0 ELSE 1 END,
    md5(i::text)::uuid::text, '', '', '',
    created_at,
    CASE WHEN due OR ahead THEN created_at ELSE created_at + interval '2 seconds' END,
    CASE WHEN due OR ahead THEN NULL ELSE created_at + interval '2 seconds' END
FROM (
    SELECT
        i,
        i > %(n)s - %(due_step)s * %(due)s AND i %% %(due_step)s = 0 AS due,
        i > %(n)s / 2 AND i %% %(ahead_step)s = 5 AS ahead,
        now() - make_interval(secs => (%(n)s - i) * 15552000.0 / %(n)s) AS created_at
    FROM generate_series(1, %(n)s) AS i
) AS rows
"""

#: What dispatch_due changed (the due rows are queued now) put back as it was.
OUTBOX_RESCHEDULE_SQL = """
UPDATE notifications_delivery SET status = 'scheduled', attempts = 0, updated_at = created_at
 WHERE id > %(n)s - %(due_step)s * %(due)s AND id %% %(due_step)s = 0 AND status <> 'scheduled'
"""


def prepare_outbox(n, due, *, reset=False):
    """n deliveries made over 180 days: ``due`` scheduled with send_at in the last hour (every 10th
    among the 10 * due most recent), 1% scheduled for the next 30 days, the rest sent.

    Built once with INSERT ... SELECT generate_series, then kept: each run puts the due rows back
    to scheduled and drops the rows W8-call wrote.
    """
    from django.db import connection
    from django.utils import timezone

    from notifications.models import Delivery

    remove_service_deliveries()
    parameters = {"n": n, "due": due, "due_step": OUTBOX_DUE_STEP, "ahead_step": OUTBOX_AHEAD_STEP}
    with connection.cursor() as cursor:
        if reset or Delivery.objects.count() != n:
            print(f"W8: building {n} Delivery rows (once; --reset rebuilds)...", flush=True)
            empty_tables(Delivery)
            rows = {"template": OUTBOX_TEMPLATE, "recipient": str(bench_user().pk)}
            cursor.execute(OUTBOX_FILL_SQL, {**parameters, **rows})
        else:
            cursor.execute(OUTBOX_RESCHEDULE_SQL, parameters)
        cursor.execute("VACUUM ANALYZE notifications_delivery")
    scheduled = Delivery.objects.filter(status=Delivery.Status.SCHEDULED, send_at__lte=timezone.now())
    if scheduled.count() != due:
        raise RuntimeError(f"{scheduled.count()} deliveries due, expected {due}; run with --reset")


def remove_service_deliveries():
    """Drop the deliveries W8-call made through the service, leaving W8's own rows."""
    from notifications.models import Delivery

    Delivery.objects.exclude(template=OUTBOX_TEMPLATE).delete()


def explain_due_query(dropped=()):
    """EXPLAIN ANALYZE of the statement with which dispatch_due takes its first batch of due rows.

    It runs in a transaction that is rolled back: the rows it locks stay as they were, and so do the
    ``dropped`` indexes, dropped to show the plan PostgreSQL would choose without them.
    """
    from django.db import connection, transaction
    from django.utils import timezone

    from notifications import outbox

    with transaction.atomic(), connection.cursor() as cursor:
        for index in dropped:
            cursor.execute(f"DROP INDEX {connection.ops.quote_name(index)}")
        batch = outbox.locked(outbox.due(timezone.now()))[: outbox.DEFAULT_BATCH_SIZE]
        sql, params = batch.query.sql_with_params()
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
        plan = [row[0] for row in cursor.fetchall()]
        transaction.set_rollback(True)
    return plan


def execution_ms(plan):
    """The "Execution Time: ... ms" of an EXPLAIN ANALYZE."""
    line = next(row for row in plan if row.startswith("Execution Time:"))
    return round(float(line.split()[2]), 3)


#: W14: the web server that takes Twilio's callbacks, one process with as many threads as a worker.
GUNICORN = [
    str(ROOT / ".venv" / "bin" / "gunicorn"),
    "project.wsgi",
    "--worker-class",
    "gthread",
    "--workers",
    "1",
    "--threads",
    "8",
    "--keep-alive",
    "30",
]
#: W14: Twilio's callbacks come from many connections at once; these many client threads post them.
CALLBACK_CLIENTS = 8
BENCH_AUTH_TOKEN = "bench-auth-token"


def w14(n):
    """n SMS sent by one worker process (the rate to keep up with), then Twilio's two status callbacks
    for each ("sent", then "delivered"), signed as Twilio signs them, posted to the callback view
    served by one gunicorn process; both rates measured in the same run."""
    from failedjobs.models import FailedJob
    from notifications.models import Delivery
    from notifications.services import NotificationsService
    from tests.fakes.twilio_server import FakeTwilio

    empty_tables(Delivery, FailedJob)
    flush_redis()
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    service = NotificationsService()
    for i in range(n):
        service.send_sms("+33612345678", text=f"Receipt bench {i}")
    twilio = FakeTwilio().start()
    twilio.auth_token = BENCH_AUTH_TOKEN
    try:
        env = bench_env(TWILIO_API_BASE_URL=twilio.url, NOTIFICATIONS_PUBLIC_URL=public_url)
        sent = Delivery.objects.filter(status=Delivery.Status.SENT).count
        with Worker(RUNDRAMATIQ, env, "w14-worker.log") as worker:
            boot_s, drain_s, worker_cpu_ms = timed_drain(worker, sent, n)
        sms_per_s = n / (drain_s - boot_s)
        callbacks = signed_callbacks(twilio, ["sent", "delivered"])
    finally:
        twilio.stop()
    server_env = bench_env(NOTIFICATIONS_PUBLIC_URL=public_url, ALLOWED_HOSTS="127.0.0.1")
    with Worker([*GUNICORN, "--bind", f"127.0.0.1:{port}"], server_env, "w14-gunicorn.log") as server:
        wait_until_serving(public_url, server)
        cpu_before = server.cpu_seconds()
        callbacks_s, answers = post_callbacks(callbacks)
        server_cpu_ms = (server.cpu_seconds() - cpu_before) * 1000 / len(callbacks)
    delivered = Delivery.objects.filter(status=Delivery.Status.DELIVERED).count()
    callbacks_per_s = len(callbacks) / callbacks_s
    return [
        {
            "workload": "W14",
            "n": n,
            "sms_per_s": round(sms_per_s),
            "callbacks_per_s": round(callbacks_per_s),
            "callbacks_per_sms_rate": round(callbacks_per_s / sms_per_s, 2),
            "delivered": delivered,
            "info": {
                "callbacks": len(callbacks),
                "answers": dict(sorted(answers.items())),
                "worker_cpu_ms_per_sms": worker_cpu_ms,
                "server_cpu_ms_per_callback": round(server_cpu_ms, 2),
            },
        }
    ]


def free_port():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def signed_callbacks(twilio, statuses):
    """(url, form, signature) of each status of each message, in Twilio's order, signed beforehand:
    Twilio's side of the work is not what is measured."""
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(twilio.auth_token)
    callbacks = []
    for status in statuses:
        for message in twilio.messages:
            url = message["status_callback"]
            form = twilio.status_parameters(message, status)
            callbacks.append((url, form, validator.compute_signature(url, form)))
    return callbacks


def wait_until_serving(url, server, timeout=60.0):
    import requests

    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        server.check_alive()
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(POLL_INTERVAL_S)
    raise TimeoutError(f"the web server did not answer in {timeout:.0f} s; see {server.log_path}")


POLL_INTERVAL_S = 0.1


def post_callbacks(callbacks):
    """Post every callback from CALLBACK_CLIENTS threads, each on its own kept-alive connection;
    return the seconds it took and how many of each HTTP status came back."""
    import threading
    from collections import Counter

    import requests

    answers, lock = Counter(), threading.Lock()
    # Each client takes every CALLBACK_CLIENTS-th callback, so "sent" comes before "delivered" in
    # each client's turn, as Twilio sends them (the view copes with either order anyway).
    shares = [callbacks[i::CALLBACK_CLIENTS] for i in range(CALLBACK_CLIENTS)]

    def post_share(share):
        counts = Counter()
        with requests.Session() as session:
            for url, form, signature in share:
                counts[
                    session.post(url, data=form, headers={"X-Twilio-Signature": signature}).status_code
                ] += 1
        with lock:
            answers.update(counts)

    threads = [threading.Thread(target=post_share, args=(share,)) for share in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, {str(code): count for code, count in answers.items()}

"""The HTTP API on 1,000,000 failed jobs and 1,000,000 deliveries: how long a page takes.

    .venv/bin/python bench/api.py                    # builds the rows once, then measures
    .venv/bin/python bench/api.py --rows 100000      # smaller tables
    .venv/bin/python bench/api.py --reset            # rebuild the rows

Each page is requested once cold and REQUESTS times warm, in this process through Django's test
client (as W4 measures the admin), with an ``act`` token. The admin's failed-job list on the same
table, in the same run, is the baseline: the API's figures are also given as a ratio of it, since
this machine's speed drifts. Target: 200 ms a page (warm median), the admin's. Prints one JSON line,
then a table. The database (default notif_h17, created and migrated if missing) keeps its rows
between runs; Redis is not used.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import POSTGRES, bench_env, prepare_database, setup_django
from bench.workloads import FILL_SQL, analyze_failed_jobs, empty_tables

REQUESTS = 5
TARGET_MS = 200

DELIVERY_FILL_SQL = """
INSERT INTO notifications_delivery (
    idempotency_key, dedup_key, topic, channel, template, recipient, context, language, send_at, status,
    attempts, message_id, provider_message_id, last_error, error_code, created_at, updated_at, sent_at
)
SELECT
    CASE WHEN i %% 3 = 0 THEN 'order-' || i ELSE '' END, '', '', channel, 'plain',
    CASE channel
        WHEN 'email' THEN 'user' || (i %% 200000) || '@example.com'
        ELSE '+336' || lpad((i %% 200000)::text, 8, '0')
    END,
    jsonb_build_object('text', 'Your code is ' || i %% 10000), 'en', NULL,
    CASE WHEN i %% 50 = 0 THEN 'failed' ELSE 'sent' END, 1, md5(i::text)::uuid::text,
    CASE WHEN channel = 'sms' THEN 'SM' || md5('p' || i) ELSE '' END, '', '',
    created_at, created_at + interval '2 seconds', created_at + interval '2 seconds'
FROM (
    SELECT i, (ARRAY['email', 'email', 'email', 'email', 'email', 'sms', 'sms', 'sms', 'whatsapp',
                     'email'])[1 + i %% 10] AS channel,
           now() - make_interval(secs => (%(n)s - i) * 15552000.0 / %(n)s) AS created_at
    FROM generate_series(1, %(n)s) AS i
) AS rows
"""


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in each table")
    parser.add_argument("--database", default="notif_h17")
    parser.add_argument("--reset", action="store_true", help="rebuild the rows")
    return parser.parse_args()


def fill(n, reset):
    from django.db import connection

    from failedjobs.models import FailedJob
    from notifications.models import Delivery

    with connection.cursor() as cursor:
        if reset or FailedJob.objects.count() != n:
            print(f"building {n} FailedJob rows...", flush=True)
            empty_tables(FailedJob)
            cursor.execute(FILL_SQL, {"n": n})
            cursor.execute("VACUUM failedjobs_failedjob")
        if reset or Delivery.objects.count() != n:
            print(f"building {n} Delivery rows...", flush=True)
            empty_tables(Delivery)
            cursor.execute(DELIVERY_FILL_SQL, {"n": n})
            cursor.execute("VACUUM ANALYZE notifications_delivery")
    analyze_failed_jobs()


def clients():
    """(the admin's client, the API's client with an act token)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from api.models import ApiToken

    users = get_user_model().objects
    user = users.filter(username="bench-admin").first() or users.create_superuser("bench-admin", "", "x")
    admin = Client(HTTP_HOST="localhost")
    admin.force_login(user)
    ApiToken.objects.filter(name="bench").delete()
    _, key = ApiToken.objects.issue(name="bench", scope="act", created_by=user)
    return admin, Client(HTTP_HOST="localhost", headers={"Authorization": f"Bearer {key}"})


def time_page(client, url):
    """(first request in ms, median of the next REQUESTS in ms, the last response)."""
    timings = []
    for _ in range(REQUESTS + 1):
        started = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}: {response.content[:300]}")
    return round(timings[0], 1), round(statistics.median(timings[1:]), 1), response


def deep_cursor(model, field, rank):
    """The cursor a client holds after walking ``rank`` rows."""
    from api.pagination import encode_cursor

    row = model.objects.order_by(f"-{field}", "-pk").values_list(field, "pk")[rank - 1]
    return encode_cursor(*row)


def pages(n):
    from datetime import timedelta
    from urllib.parse import urlencode

    from django.urls import reverse
    from django.utils import timezone

    from failedjobs.models import FailedJob
    from notifications.models import Delivery

    jobs, deliveries = reverse("api:failed-job-list"), reverse("api:delivery-list")
    admin_list = reverse("admin:failedjobs_failedjob_changelist")
    middle = n // 2
    job = FailedJob.objects.order_by("pk")[middle]
    delivery = Delivery.objects.order_by("pk")[middle]
    since = (timezone.now() - timedelta(days=1)).isoformat()

    def q(base, **params):
        return f"{base}?{urlencode(params)}"

    return {
        "admin_list": ("admin", admin_list),
        "admin_list_filtered": ("admin", q(admin_list, queue_name="sms", status__exact="failed")),
        "jobs": ("api", jobs),
        "jobs_filtered": ("api", q(jobs, queue="sms", status="failed")),
        "jobs_deep_page": ("api", q(jobs, cursor=deep_cursor(FailedJob, "failed_at", middle))),
        "jobs_filtered_deep_page": (
            "api",
            q(jobs, queue="sms", status="failed", cursor=deep_cursor(FailedJob, "failed_at", middle)),
        ),
        "jobs_exception_class": (
            "api",
            q(jobs, queue="sms", exception_class="notifications.exceptions.PermanentDeliveryError"),
        ),
        "jobs_since_yesterday": ("api", q(jobs, since=since)),
        "jobs_error_signature": ("api", q(jobs, error_signature=job.error_signature, status="failed")),
        "jobs_recipient": ("api", q(jobs, recipient=job.kwargs["recipient"])),
        "jobs_max_page": ("api", q(jobs, limit=500)),
        "job_detail": ("api", reverse("api:failed-job-detail", args=[job.pk])),
        "deliveries": ("api", deliveries),
        "deliveries_filtered": ("api", q(deliveries, channel="email", status="failed")),
        "deliveries_deep_page": ("api", q(deliveries, cursor=deep_cursor(Delivery, "created_at", middle))),
        "delivery_by_idempotency_key": ("api", q(deliveries, idempotency_key=f"order-{middle - middle % 3}")),
        "delivery_by_provider_id": ("api", q(deliveries, provider_message_id=delivery_provider_id(middle))),
        "delivery_by_recipient": ("api", q(deliveries, recipient=delivery.recipient)),
        "delivery_by_recipient_last_week": (
            "api",
            q(
                deliveries,
                recipient=delivery.recipient,
                since=(timezone.now() - timedelta(days=7)).isoformat(),
            ),
        ),
        "delivery_detail": ("api", reverse("api:delivery-detail", args=[delivery.pk])),
    }


def delivery_provider_id(around):
    from notifications.models import Delivery

    row = Delivery.objects.filter(pk__gte=around).exclude(provider_message_id="").order_by("pk").first()
    return row.provider_message_id


def main():
    args = parse_args()
    database_url = f"{POSTGRES}/{args.database}"
    os.environ.update(
        bench_env(
            DATABASE_URL=database_url,
            REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3"),
            QUEUE_ENABLED="false",
            API_RATE_LIMIT="",
        )
    )
    prepare_database(args.database)
    setup_django(args.database)
    fill(args.rows, args.reset)
    admin, api = clients()
    line = {"workload": "API", "n": args.rows}
    rows = []
    for name, (who, url) in pages(args.rows).items():
        client = admin if who == "admin" else api
        cold_ms, warm_ms, response = time_page(client, url)
        line[f"{name}_ms"], line[f"{name}_cold_ms"] = warm_ms, cold_ms
        found = len(response.json()["results"]) if who == "api" and "results" in response.json() else ""
        rows.append((name, warm_ms, cold_ms, found))
    print(json.dumps(line))
    baseline = line["admin_list_ms"]
    print(f"\n{'page':<30} {'warm ms':>9} {'cold ms':>9} {'x admin list':>13} {'rows':>5}  <= {TARGET_MS} ms")
    for name, warm_ms, cold_ms, found in rows:
        verdict = "yes" if warm_ms <= TARGET_MS else "NO"
        ratio = warm_ms / baseline
        print(f"{name:<30} {warm_ms:>9} {cold_ms:>9} {ratio:>13.2f} {found!s:>5}  {verdict}")


if __name__ == "__main__":
    main()

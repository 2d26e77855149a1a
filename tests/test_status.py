"""What waits where, read from real Redis and PostgreSQL: the command, the admin page and the metrics."""

import io
import json
import time

import dramatiq
import pytest
from django.core.management import call_command
from django.urls import reverse

from notifications import status as pipeline
from notifications import tasks
from notifications.status import pipeline_status
from tests.factories import failed_job, job_message
from tests.helpers import wait_until

pytestmark = [pytest.mark.django_db, pytest.mark.postgresql]


def fill_queues(broker):
    """Two SMS waiting (the first enqueued 90 s ago), one email delayed for a retry, one dead SMS."""
    old = job_message("sms").copy(message_timestamp=int((time.time() - 90) * 1000))
    broker.enqueue(old)
    broker.enqueue(job_message("sms"))
    broker.enqueue(job_message("email", "ada@example.com"), delay=60_000)
    consumer = broker.consume("whatsapp", timeout=100)
    broker.enqueue(job_message("whatsapp"))
    message = wait_until(lambda: next(consumer), message="the WhatsApp message")
    consumer.nack(message)  # Dramatiq's own rejection: into the dead-letter queue
    consumer.close()


def test_queues_count_waiting_delayed_and_dead_messages(redis_broker):
    fill_queues(redis_broker)

    queues = {queue.name: queue for queue in pipeline.queue_statuses(redis_broker)}

    assert (queues["sms"].waiting, queues["sms"].delayed, queues["sms"].dead) == (2, 0, 0)
    assert 89 <= queues["sms"].oldest_age_s < 150
    assert (queues["email"].waiting, queues["email"].delayed) == (0, 1)
    assert queues["email"].oldest_age_s is None
    assert queues["whatsapp"].dead == 1


def test_workers_alive_are_running_workers_not_senders(redis_broker):
    # A sender beats in Dramatiq's own heartbeats; due in an hour, the workers leave it alone.
    redis_broker.enqueue(job_message("sms"), delay=3_600_000)
    assert pipeline.workers_alive(redis_broker) == 0
    workers = [dramatiq.Worker(redis_broker, worker_timeout=50, worker_threads=1) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        wait_until(lambda: pipeline.workers_alive(redis_broker) == 2, message="two workers' heartbeats")
        later = time.time() + redis_broker.heartbeat_timeout / 1000 + 20
        assert pipeline.workers_alive(redis_broker, now=later) == 0  # silent that long: not counted
    finally:
        workers[0].stop()
    assert pipeline.workers_alive(redis_broker) == 1  # a worker that stops leaves at once
    workers[1].stop()
    assert pipeline.workers_alive(redis_broker) == 0


def test_the_scheduler_tick_is_recorded_by_the_periodic_dispatch(redis_broker):
    assert pipeline.scheduler_last_tick(redis_broker) is None
    before = time.time()

    tasks.dispatch_due.fn()

    tick = pipeline.scheduler_last_tick(redis_broker)
    assert tick is not None and before - 1 <= tick.timestamp() <= time.time()


def test_the_command_prints_queues_workers_scheduler_and_groups(redis_broker):
    fill_queues(redis_broker)
    for number in ("+33612345678", "+33698765432"):
        failed_job("sms", number)
    failed_job("sms", exception_class="builtins.ValueError", error_code="")
    out = io.StringIO()

    call_command("notifications_status", stdout=out)

    text = out.getvalue()
    [sms] = [line.split() for line in text.splitlines() if line.startswith("sms ")]
    assert sms[:4] == ["sms", "2", "0", "0"]
    assert "Scheduler's last tick: never seen" in text
    assert "Failed jobs waiting: 3 in 2 group(s)" in text
    assert "+33612345678" not in text
    data = json.loads(call_command_json())
    assert [group["count"] for group in data["failed_jobs"]] == [2, 1]
    assert {queue["name"]: queue["delayed"] for queue in data["queues"]}["email"] == 1


def call_command_json():
    out = io.StringIO()
    call_command("notifications_status", "--json", stdout=out)
    return out.getvalue()


def test_the_status_says_when_redis_does_not_answer(unreachable_redis):
    failed_job("sms")

    status = pipeline_status()

    assert status.redis_error.startswith("Redis does not answer")
    assert status.failed_jobs == 1


def test_the_admin_status_page(admin_client, redis_broker):
    fill_queues(redis_broker)
    failed_job("sms")
    tasks.dispatch_due.fn()

    response = admin_client.get(reverse("admin:notifications_status"))

    html = response.content.decode()
    assert response.context["status"].queues
    assert '<tr class="queue-sms"><td>sms</td><td>2</td><td>0</td><td>0</td>' in html
    assert "never seen" not in html
    assert "Failed jobs waiting: 1" in html


def test_metrics_give_depth_delayed_and_oldest_age_per_queue(client, redis_broker):
    fill_queues(redis_broker)

    lines = client.get("/metrics").content.decode().splitlines()

    assert 'notifications_queue_depth{queue="sms"} 2.0' in lines
    assert 'notifications_queue_delayed{queue="email"} 1.0' in lines
    [age] = [
        line
        for line in lines
        if line.startswith('notifications_queue_oldest_message_age_seconds{queue="sms"}')
    ]
    assert 89 <= float(age.split()[-1]) < 150


def test_a_real_worker_process_counts_as_alive_until_it_stops(worker_process, redis_broker):
    process = worker_process()

    wait_until(lambda: pipeline.workers_alive(redis_broker) == 1, timeout=30, message="a heartbeat")
    process.stop()

    assert pipeline.workers_alive(redis_broker) == 0

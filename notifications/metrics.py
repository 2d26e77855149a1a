"""Prometheus metrics for operators: deliveries, failed jobs and dead letters, read at scrape time.

Workers export their own metrics (messages, errors, retries, durations) through Dramatiq's
Prometheus middleware when METRICS_ENABLED is on.
"""

from datetime import timedelta

import dramatiq
import redis
from django.db.models import Count
from django.http import HttpResponse, HttpResponseForbidden
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from . import breaker
from .conf import setting
from .models import Delivery
from .status import queue_statuses

DELIVERY_WINDOW_HOURS = 24


class PipelineCollector:
    """Counts taken from the database and Redis each time Prometheus scrapes."""

    def collect(self):
        yield self.deliveries()
        yield self.failed_jobs()
        yield self.dead_letters()
        yield from self.queues()
        yield self.circuit_breakers()

    def deliveries(self):
        gauge = GaugeMetricFamily(
            "notifications_deliveries",
            f"Notifications created in the last {DELIVERY_WINDOW_HOURS} hours, by channel and status.",
            labels=["channel", "status"],
        )
        since = timezone.now() - timedelta(hours=DELIVERY_WINDOW_HOURS)
        rows = (
            Delivery.objects.filter(created_at__gte=since).values("channel", "status").annotate(n=Count("id"))
        )
        for row in rows.order_by():
            gauge.add_metric([row["channel"], row["status"]], row["n"])
        return gauge

    def failed_jobs(self):
        from failedjobs.models import FailedJob

        gauge = GaugeMetricFamily(
            "notifications_failed_jobs", "Failed jobs waiting for an operator, by queue.", labels=["queue"]
        )
        rows = (
            FailedJob.objects.filter(status=FailedJob.Status.FAILED)
            .values("queue_name")
            .annotate(n=Count("id"))
        )
        for row in rows.order_by():
            gauge.add_metric([row["queue_name"]], row["n"])
        return gauge

    def dead_letters(self):
        gauge = GaugeMetricFamily(
            "notifications_dead_letters",
            "Messages in Redis dead-letter queues not yet copied into FailedJob, by queue.",
            labels=["queue"],
        )
        for queue, count in dead_letter_counts():
            gauge.add_metric([queue], count)
        return gauge

    def queues(self):
        """Waiting and delayed messages and the oldest one's age, per queue: a few Redis reads in all."""
        depth = GaugeMetricFamily(
            "notifications_queue_depth", "Messages waiting in each Redis queue.", labels=["queue"]
        )
        delayed = GaugeMetricFamily(
            "notifications_queue_delayed",
            "Messages waiting for a retry (or an eta) in each queue's delay queue.",
            labels=["queue"],
        )
        oldest = GaugeMetricFamily(
            "notifications_queue_oldest_message_age_seconds",
            "Age of the oldest message waiting in each queue; 0 when none waits.",
            labels=["queue"],
        )
        try:
            statuses = queue_statuses(dramatiq.get_broker())
        except redis.RedisError:
            statuses = []  # Redis is down; the database's figures still answer
        for queue in statuses:
            depth.add_metric([queue.name], queue.waiting)
            delayed.add_metric([queue.name], queue.delayed)
            oldest.add_metric([queue.name], queue.oldest_age_s or 0)
        return depth, delayed, oldest

    def circuit_breakers(self):
        gauge = GaugeMetricFamily(
            "notifications_circuit_breaker_open",
            "1 while a provider's circuit breaker holds its messages (open or forced open), "
            "0.5 while half-open, 0 when closed.",
            labels=["provider", "mode"],
        )
        for status in breaker_statuses():
            value = {"open": 1.0, "half-open": 0.5}.get(status.state, 0.0)
            gauge.add_metric([status.provider, status.mode], value)
        return gauge


def breaker_statuses():
    if breaker.redis_client() is None:
        return []
    try:
        return breaker.statuses()
    except redis.RedisError:
        return []


def dead_letter_counts():
    broker = dramatiq.get_broker()
    client = getattr(broker, "client", None)
    if client is None:
        return []
    try:
        return [
            (queue, client.zcard(f"{getattr(broker, 'namespace', 'dramatiq')}:{queue}.XQ"))
            for queue in sorted(broker.get_declared_queues())
        ]
    except redis.RedisError:
        return []  # Redis is down; the database's figures still answer


@require_GET
def metrics(request):
    """Prometheus text format; when METRICS_TOKEN is set, scrapers send it as a bearer token."""
    token = setting("METRICS_TOKEN")
    if token and not constant_time_compare(request.headers.get("Authorization", ""), f"Bearer {token}"):
        return HttpResponseForbidden("A valid METRICS_TOKEN bearer token is required.\n")
    registry = CollectorRegistry()
    registry.register(PipelineCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

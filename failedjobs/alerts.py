"""Alerts for operators: a new error group, a group growing past a threshold, dead letters left in Redis.

``check_and_send`` runs every minute (the ``check_alerts`` periodic job). Everything it finds goes in
one alert, by email to ADMINS (FAILED_JOBS_ALERT_EMAIL) and/or as Slack-compatible JSON ``{"text":
...}`` to FAILED_JOBS_ALERT_WEBHOOK_URL, and nothing about the same group (or the dead letters) is
sent again within FAILED_JOBS_ALERT_REPEAT_AFTER_S.

An alert is sent from here, never through the queues: one that fails to send is logged, and can
never become a failed job that would be alerted about in turn. The alert job's own failures are left
out of the groups for the same reason.
"""

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import dramatiq
import redis
import requests
from django.conf import settings
from django.core.mail import mail_admins
from django.db.models import Count, QuerySet
from django.utils import timezone
from dramatiq.common import q_name, xq_name

from .conf import setting
from .models import Alert, FailedJob

logger = logging.getLogger(__name__)

#: The periodic job that runs the checks; its own failed jobs are never alerted about.
ALERT_ACTOR = "check_alerts"


@dataclass(frozen=True)
class Finding:
    key: str
    line: str


def group_key(kind: str, signature: str) -> str:
    return f"{kind}:{hashlib.sha1(signature.encode()).hexdigest()}"


def failures_in_window(now: datetime) -> tuple[datetime, dict[str, int]]:
    since = now - timedelta(seconds=setting("FAILED_JOBS_ALERT_WINDOW_S"))
    rows = (
        alertable()
        .filter(failed_at__gte=since)
        .values("error_signature")
        .annotate(n=Count("id"))
        .order_by("-n")
    )
    return since, {row["error_signature"]: row["n"] for row in rows}


def alertable() -> QuerySet[FailedJob]:
    return FailedJob.objects.exclude(actor_name=ALERT_ACTOR).order_by()


def group_findings(now: datetime) -> list[Finding]:
    """New groups (no failure before the window) and groups past the threshold within it."""
    since, counts = failures_in_window(now)
    if not counts:
        return []
    seen_before = set(
        alertable()
        .filter(error_signature__in=list(counts), failed_at__lt=since)
        .values_list("error_signature", flat=True)
        .distinct()
    )
    window = f"{setting('FAILED_JOBS_ALERT_WINDOW_S') // 60} min"
    findings = []
    for signature, count in counts.items():
        if signature not in seen_before:
            findings.append(
                Finding(group_key("new", signature), f"New error group: {signature} ({count} in {window})")
            )
        if count >= setting("FAILED_JOBS_ALERT_THRESHOLD"):
            findings.append(
                Finding(group_key("growing", signature), f"{count} failures in {window}: {signature}")
            )
    return findings


def dead_letter_finding(broker: dramatiq.Broker | None = None, now: float | None = None) -> Finding | None:
    """Dead letters older than FAILED_JOBS_ALERT_DEAD_LETTER_AGE_S: reconciling them keeps failing."""
    broker = broker or dramatiq.get_broker()
    client = getattr(broker, "client", None)
    if not setting("QUEUE_ENABLED") or not isinstance(client, redis.Redis):
        return None
    namespace = getattr(broker, "namespace", "dramatiq")
    cutoff_ms = ((now or time.time()) - setting("FAILED_JOBS_ALERT_DEAD_LETTER_AGE_S")) * 1000
    old = {}
    try:
        for queue in sorted({q_name(name) for name in broker.get_declared_queues()}):
            count = client.zcount(f"{namespace}:{xq_name(queue)}", 0, cutoff_ms)
            if count:
                old[queue] = count
    except redis.RedisError:
        return None  # /readyz and notifications_health say that Redis is down
    if not old:
        return None
    where = ", ".join(f"{count} in {queue}" for queue, count in old.items())
    minutes = setting("FAILED_JOBS_ALERT_DEAD_LETTER_AGE_S") // 60
    return Finding(
        "dead-letters",
        f"Dead letters left in Redis for more than {minutes} min ({where}): they could not be filed as "
        "failed jobs; see the log of reconcile_dead_letters.",
    )


def claim(key: str, now: datetime, text: str) -> bool:
    """Whether an alert about ``key`` may go now; if so, it is recorded as sent (one sender wins)."""
    cutoff = now - timedelta(seconds=setting("FAILED_JOBS_ALERT_REPEAT_AFTER_S"))
    if Alert.objects.filter(key=key, last_sent_at__lt=cutoff).update(last_sent_at=now, text=text):
        return True
    _, created = Alert.objects.get_or_create(key=key, defaults={"last_sent_at": now, "text": text})
    return created


def check_and_send(now: datetime | None = None) -> list[str]:
    """Look for what needs an alert; send one alert with what was not alerted about lately.

    Returns the lines sent (empty when nothing was, or when no destination is configured).
    """
    if not destinations_configured():
        return []
    now = now or timezone.now()
    findings = group_findings(now)
    dead = dead_letter_finding()
    if dead is not None:
        findings.append(dead)
    lines = [finding.line for finding in findings if claim(finding.key, now, finding.line)]
    if lines:
        send("Notifications: " + lines[0][:120], "\n".join(lines))
    return lines


def destinations_configured() -> bool:
    emails = setting("FAILED_JOBS_ALERT_EMAIL") and bool(settings.ADMINS)
    return emails or bool(setting("FAILED_JOBS_ALERT_WEBHOOK_URL"))


def send(subject: str, text: str) -> None:
    """Email ADMINS and/or post to the webhook; a failure is logged, never raised nor queued."""
    if setting("FAILED_JOBS_ALERT_EMAIL") and settings.ADMINS:
        try:
            mail_admins(subject, text)
        except Exception:
            logger.exception("Could not email the alert to ADMINS: %s", text)
    url = cast(str, setting("FAILED_JOBS_ALERT_WEBHOOK_URL"))
    if url:
        try:
            response = requests.post(
                url, json={"text": f"{subject}\n{text}"}, timeout=setting("FAILED_JOBS_ALERT_TIMEOUT_S")
            )
            response.raise_for_status()
        except requests.RequestException as error:
            # Not the error's text: it holds the URL, whose path is the webhook's secret.
            status = getattr(error.response, "status_code", None)
            logger.error(
                "Could not post the alert to the webhook (%s %s): %s",
                type(error).__name__,
                status or "",
                text,
            )

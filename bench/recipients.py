"""W9: the recipients' side. Open live streams that one uvicorn process holds, with a notification
fanned out to all of them; the drain with and without publishing to the stream; the service call
with and without the preference check.
"""

import asyncio
import json
import socket
import statistics
import sys
import threading
import time
from datetime import timedelta

from bench.harness import RUNDRAMATIQ, Worker, bench_env, bench_user, empty_tables, flush_redis, percentile
from bench.workloads import enqueue_in_app, timed_drain

#: Notifications sent to every size of stream set; the first is not measured (warm-up).
ROUNDS = 11
#: W9-call: calls of each kind made first and not measured.
CALL_WARM_UP = 50


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def session_cookie(user):
    """A session of the bench user, as signing in would make it."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"sessionid={session.session_key}"


class Streams:
    """Open SSE connections held by an event loop in a thread; each records when each notification
    (by title) reached it."""

    def __init__(self, port, cookie):
        self.port, self.cookie = port, cookie
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.ready = 0
        self.received: dict[str, list[float]] = {}
        self.writers = []
        self.futures = []

    def open(self, count):
        self.futures += [asyncio.run_coroutine_threadsafe(self.follow(), self.loop) for _ in range(count)]

    async def follow(self):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)
        self.writers.append(writer)
        request = (
            "GET /notifications/stream/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Cookie: {self.cookie}\r\nAccept: text/event-stream\r\n\r\n"
        )
        writer.write(request.encode())
        event = ""
        while line := await reader.readline():
            if line.startswith(b"event: "):
                event = line[7:].strip().decode()
            elif line.startswith(b"data: "):
                if event == "notification":
                    title = json.loads(line[6:])["title"]
                    self.received.setdefault(title, []).append(time.time())
                elif event == "unread" and b'"unread"' in line and not getattr(writer, "counted", False):
                    writer.counted = True  # type: ignore[attr-defined]
                    self.ready += 1

    def close(self):
        for future in self.futures:
            future.cancel()
        time.sleep(0.5)
        for writer in self.writers:
            self.loop.call_soon_threadsafe(writer.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"Timed out waiting for {what}")
        time.sleep(0.01)


def rss_mb(pid):
    """Resident memory of a process and its children (uvicorn runs in one process here)."""
    with open(f"/proc/{pid}/status") as status:
        lines = status.readlines()
    for line in lines:
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def w9_stream(sizes):
    """One notification at a time to N open streams of one user: latency from the worker's write
    (the row's created_at) to the event at each client, for each N; N=1 is the baseline."""
    from notifications.models import Delivery, InAppNotification
    from notifications.services import NotificationsService

    empty_tables(Delivery, InAppNotification)
    flush_redis()
    user, service = bench_user(), NotificationsService()
    port = free_port()
    uvicorn = [sys.executable, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1"]
    uvicorn += ["--port", str(port), "--backlog", "4096", "--log-level", "warning", "--no-access-log"]
    server = Worker(uvicorn, bench_env(), "w9-uvicorn.log").start()
    worker = Worker(RUNDRAMATIQ, bench_env(), "w9-worker.log").start()
    streams = Streams(port, session_cookie(user))
    lines, opened, baseline = [], 0, None
    try:
        wait_for(lambda: answers(port), 60, "uvicorn")
        for size in [1, *sizes]:
            streams.open(size - opened)
            opened = size
            wait_for(lambda size=size: streams.ready >= size, 120, f"{size} streams")
            latencies = fan_out(service, user, streams, size, worker)
            p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
            baseline = baseline or p99
            lines.append(
                {
                    "workload": "W9-stream",
                    "n": size,
                    "p50_ms": round(p50, 2),
                    "p99_ms": round(p99, 2),
                    "max_ms": round(max(latencies), 2),
                    "p99_vs_one_stream": round(p99 / baseline, 2),
                    "info": {"uvicorn_rss_mb": rss_mb(server.process.pid), "events": len(latencies)},
                }
            )
    finally:
        streams.close()
        worker.stop()
        server.stop()
    return lines


def answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def fan_out(service, user, streams, size, worker):
    from notifications.models import InAppNotification

    latencies = []
    for round_ in range(ROUNDS):
        title = f"fan-out {size} {round_}"
        service.create_inapp_notification(user, title=title)
        wait_for(lambda title=title: len(streams.received.get(title, ())) >= size, 60, f"{title} everywhere")
        worker.check_alive()
        written = InAppNotification.objects.get(title=title).created_at.timestamp()
        if round_:  # the first round warms up
            latencies += [(at - written) * 1000 for at in streams.received[title]]
        time.sleep(0.2)
    return latencies


def w9_drain(n, pairs=2):
    """Drain n in-app notifications with publishing on, then off, ``pairs`` times in turn; the
    jobs a second of each are the medians."""
    from notifications.models import Delivery, InAppNotification
    from notifications.services import NotificationsService

    service, user = NotificationsService(), bench_user()
    rates = {"true": [], "false": []}
    cpu = {"true": [], "false": []}
    for pair in range(pairs):
        order = ["true", "false"] if pair % 2 == 0 else ["false", "true"]
        for enabled in order:
            empty_tables(Delivery, InAppNotification)
            flush_redis()
            enqueue_in_app(service, user, n)
            env = bench_env(NOTIFICATIONS_STREAM_ENABLED=enabled)
            with Worker(RUNDRAMATIQ, env, f"w9-drain-{enabled}.log") as worker:
                boot_s, drain_s, cpu_ms = timed_drain(worker, InAppNotification.objects.count, n)
            rates[enabled].append(n / (drain_s - boot_s))
            cpu[enabled].append(cpu_ms)
    with_stream, without = statistics.median(rates["true"]), statistics.median(rates["false"])
    return [
        {
            "workload": "W9-drain",
            "n": n,
            "jobs_per_s_publishing": round(with_stream),
            "jobs_per_s_not_publishing": round(without),
            "ratio": round(with_stream / without, 3),
            "info": {
                "runs": pairs * 2,
                "worker_cpu_ms_per_job_publishing": statistics.median(cpu["true"]),
                "worker_cpu_ms_per_job_not_publishing": statistics.median(cpu["false"]),
            },
        }
    ]


def w9_call(calls):
    """send_sms and send_email with ``for_user`` (preferences and quiet hours read; for email, an
    unsubscribe link signed) and without, alternated, queue on, no worker."""
    from django.utils import timezone

    from notifications import preferences
    from notifications.models import Delivery, NotificationPreference, QuietHours
    from notifications.services import NotificationsService

    empty_tables(Delivery, NotificationPreference, QuietHours)
    flush_redis()
    service, user = NotificationsService(), bench_user()
    # Rows to read: a category turned off (not the one sent) and quiet hours that do not hold now.
    preferences.set_preference(user, "marketing", "sms", False)
    later = timezone.now() + timedelta(hours=2)
    preferences.set_quiet_hours(user, later.time(), (later + timedelta(hours=1)).time(), "UTC")
    kinds = {
        "sms": lambda: service.send_sms("+33612345678", text="Bench"),
        "sms_for_user": lambda: service.send_sms("+33612345678", text="Bench", for_user=user),
        "email": lambda: service.send_email("ada@example.com", subject="Bench", text="Bench"),
        "email_for_user": lambda: service.send_email(
            "ada@example.com", subject="Bench", text="Bench", for_user=user
        ),
    }
    times = {kind: [] for kind in kinds}
    names = list(kinds)
    for index in range(CALL_WARM_UP + calls):
        order = names if index % 2 == 0 else names[::-1]
        for kind in order:
            started = time.perf_counter()
            kinds[kind]()
            if index >= CALL_WARM_UP:
                times[kind].append((time.perf_counter() - started) * 1000)
    skipped = Delivery.objects.exclude(status=Delivery.Status.QUEUED).count()
    empty_tables(Delivery)
    flush_redis()
    line = {"workload": "W9-call", "n": calls}
    for kind, values in times.items():
        line[f"{kind}_p50_ms"] = round(percentile(values, 0.50), 3)
        line[f"{kind}_p99_ms"] = round(percentile(values, 0.99), 3)
    line["sms_p99_ratio"] = round(line["sms_for_user_p99_ms"] / line["sms_p99_ms"], 3)
    line["email_p99_ratio"] = round(line["email_for_user_p99_ms"] / line["email_p99_ms"], 3)
    line["info"] = {"not_queued": skipped}
    return [line]

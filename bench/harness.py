"""What every workload needs: the environment, the databases, Redis, worker processes and timing helpers.

Everything is configured through environment variables, for this process (before ``django.setup()``)
and for the worker processes alike, as in ``tests/conftest.py``.
"""

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
POSTGRES = "postgres://postgres@127.0.0.1:5432"
#: BENCH_DATABASE picks another, so that two people benchmarking on one server do not share tables.
DATABASE = os.environ.get("BENCH_DATABASE", "notifications_bench")
#: W4's million rows live in their own database, so that W2 and W3 (which empty FailedJob) keep them.
ADMIN_DATABASE = "notifications_bench_admin"
#: W8's million deliveries, kept between runs like W4's rows.
OUTBOX_DATABASE = "notif_bench_outbox"
#: Flushed at the start of each workload; BENCH_REDIS_URL picks another database.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
POLL_INTERVAL = 0.05

RUNDRAMATIQ = [sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads", "8"]
BARE_DRAMATIQ = [
    str(Path(sys.executable).parent / "dramatiq"),
    "django_dramatiq.setup",
    "bench.bare_actors",
    "--processes",
    "1",
    "--threads",
    "8",
]


def bench_env(**overrides):
    """The environment of this process and of every worker; ``overrides`` are added as strings."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-key"),
        # W4 builds a million rows in one statement.
        "DATABASE_STATEMENT_TIMEOUT_MS": "0",
        "DATABASE_URL": f"{POSTGRES}/{DATABASE}",
        "REDIS_URL": REDIS_URL,
        "QUEUE_ENABLED": "true",
        "LOG_LEVEL": "WARNING",
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": "bench-auth-token",
        "TWILIO_SMS_FROM": "+15005550006",
    }
    env.update({name: str(value) for name, value in overrides.items()})
    return env


def prepare_database(name):
    """Create the database if it is missing, then bring its schema up to date."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    command = [sys.executable, "manage.py", "migrate", "--verbosity", "0", "--skip-checks"]
    subprocess.run(command, cwd=ROOT, env=bench_env(DATABASE_URL=f"{POSTGRES}/{name}"), check=True)


def setup_django(database=DATABASE):
    """Set up Django in this process, its default connection on ``database``."""
    os.environ.update(bench_env(DATABASE_URL=f"{POSTGRES}/{database}"))
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


@contextlib.contextmanager
def using_database(name):
    """Point Django's default connection at another database for a while, as the test runner does."""
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection

    previous = connection.settings_dict["NAME"]
    connection.close()
    connection.settings_dict["NAME"] = name
    ContentType.objects.clear_cache()
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["NAME"] = previous
        ContentType.objects.clear_cache()


def flush_redis():
    import dramatiq

    dramatiq.get_broker().client.flushdb()


def empty_tables(*models):
    from django.db import connection

    tables = ", ".join(connection.ops.quote_name(model._meta.db_table) for model in models)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


def bench_user():
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench")
    return user


class Worker:
    """A worker command in its own process group, logging to bench/results/; stopped with SIGTERM."""

    running = []

    def __init__(self, command, env, log_name):
        self.command = command
        self.env = env
        self.log_path = RESULTS / log_name
        self.process = None
        self.started_at = None

    def start(self):
        RESULTS.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.started_at = time.perf_counter()
            self.process = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        Worker.running.append(self)
        return self

    def check_alive(self):
        code = self.process.poll()
        if code is not None:
            raise RuntimeError(f"worker exited with status {code}; see {self.log_path}")

    def stop(self):
        if self in Worker.running:
            Worker.running.remove(self)
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def cpu_seconds(self):
        """CPU time (user and system) used so far by the processes in the worker's group."""
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[2]) == self.process.pid:  # the process group
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    @classmethod
    def stop_all(cls):
        for worker in list(cls.running):
            worker.stop()


def wait_for_count(count, target, worker, *, timeout=300.0):
    """Poll ``count()`` every 50 ms until it reaches ``target``; return the seconds since the worker start."""
    while True:
        done = count()
        elapsed = time.perf_counter() - worker.started_at
        if done >= target:
            return elapsed
        if elapsed > timeout:
            raise TimeoutError(f"{done} of {target} after {timeout:.0f} s; see {worker.log_path}")
        worker.check_alive()
        time.sleep(POLL_INTERVAL)


def percentile(values, fraction):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def sleep_until(moment):
    delay = moment - time.perf_counter()
    if delay > 0:
        time.sleep(delay)

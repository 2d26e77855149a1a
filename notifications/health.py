"""Health checks for container probes and cron: is the process up, do the database and Redis answer.

``/healthz`` says the process serves requests and touches nothing else. ``/readyz`` and
``manage.py notifications_health`` run every check in CHECKS and say which failed. Each check
reports its status, how long it took and, on failure, the error with any credentials masked.
"""

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import dramatiq
import redis
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from redis.backoff import NoBackoff
from redis.retry import Retry

from failedjobs.conf import setting as failedjobs_setting

OK = "ok"
FAILED = "failed"
NOT_USED = "not used"

#: Seconds the Redis check waits to connect, then for the answer to PING; it is not retried.
REDIS_TIMEOUT_S = 1.0

_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@]+@")
_PASSWORD_PARAMETER = re.compile(r"(?i)\b(password\s*=\s*)('[^']*'|\S+)")


@dataclass(frozen=True)
class CheckResult:
    status: str
    ms: float
    error: str = ""
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"status": self.status, "ms": self.ms}
        if self.error:
            result["error"] = self.error
        if self.detail:
            result["detail"] = self.detail
        return result

    def line(self, name: str) -> str:
        """One line for the command's output."""
        if self.status == FAILED:
            return f"{name}: {FAILED} after {self.ms} ms: {self.error}"
        if self.status == NOT_USED:
            return f"{name}: {NOT_USED} ({self.detail})"
        return f"{name}: {self.status} ({self.ms} ms)"


def mask_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with the user and password of URLs, ``password=`` parameters and ``secrets`` masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    return _PASSWORD_PARAMETER.sub(r"\1***", text)


def _timed(check: Callable[[], None], secrets: Iterable[str] = ()) -> CheckResult:
    started = time.monotonic()
    try:
        check()
    except Exception as error:
        ms = round((time.monotonic() - started) * 1000, 1)
        text = " ".join(f"{type(error).__name__}: {error}".split())  # one line, for the command's output
        return CheckResult(FAILED, ms, error=mask_secrets(text, secrets))
    return CheckResult(OK, round((time.monotonic() - started) * 1000, 1))


def check_database(alias: str = DEFAULT_DB_ALIAS) -> CheckResult:
    """``SELECT 1`` on the database, bounded by its connection's own timeouts.

    On PostgreSQL these are DATABASE_CONNECT_TIMEOUT for a new connection, and the statement and TCP
    user timeouts for a kept one.
    """
    connection = connections[alias]

    def select_one() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    return _timed(select_one, secrets=[connection.settings_dict.get("PASSWORD") or ""])


def check_redis(broker: dramatiq.Broker | None = None, timeout: float = REDIS_TIMEOUT_S) -> CheckResult:
    """PING on the Redis of the Dramatiq broker (the global one by default), on a connection of its own.

    The connection has the broker client's settings (host, database, credentials, TLS) but waits at
    most ``timeout`` seconds to connect and for the answer, and is not retried. Not used when
    QUEUE_ENABLED is off (messages then run in the caller) or when the broker is not on Redis.
    """
    if not failedjobs_setting("QUEUE_ENABLED"):
        return CheckResult(NOT_USED, 0.0, detail="QUEUE_ENABLED is off")
    if broker is None:
        broker = dramatiq.get_broker()
    client = getattr(broker, "client", None)
    if not isinstance(client, redis.Redis):
        return CheckResult(NOT_USED, 0.0, detail=f"the broker is a {type(broker).__name__}, not on Redis")
    pool = client.connection_pool
    options = {
        **pool.connection_kwargs,
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
    }

    def ping() -> None:
        probe_pool = redis.ConnectionPool(
            connection_class=pool.connection_class, max_connections=1, **options
        )
        try:
            redis.Redis(connection_pool=probe_pool).ping()
        finally:
            probe_pool.disconnect()

    return _timed(ping, secrets=[str(options.get("password") or "")])


#: The readiness checks, by the name they are reported under.
CHECKS: dict[str, Callable[[], CheckResult]] = {"database": check_database, "redis": check_redis}


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, CheckResult]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> list[str]:
        """The names of the checks that failed."""
        return [name for name, result in self.checks.items() if result.status == FAILED]

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": OK if self.ok else FAILED,
            "checks": {name: result.as_dict() for name, result in self.checks.items()},
        }


def run_checks() -> Readiness:
    """Every check in CHECKS, one after the other."""
    return Readiness({name: check() for name, check in CHECKS.items()})


@require_safe
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """The process serves requests; neither the database nor Redis is touched."""
    return JsonResponse({"status": OK})


@transaction.non_atomic_requests  # a failed check must not break a request-wide transaction
@require_safe
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when every check passes, 503 otherwise; the body says which failed."""
    readiness = run_checks()
    return JsonResponse(readiness.as_dict(), status=200 if readiness.ok else 503)

"""Plain functions the tests share; fixtures are in conftest.py, rows in factories.py."""

import time
from pathlib import Path

#: The repository's top folder.
ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    """The URL of the test database, for processes and connections of the tests' own."""
    from django.db import connection

    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_until(condition, timeout=15.0, interval=0.05, message="condition"):
    """Poll until condition() is truthy; fail the test with ``message`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout}s waiting for {message}")


def broker_speedups_off() -> bool:
    """CI's second pass (REDIS_BROKER_SPEEDUPS=false): tests that do not depend on the broker's
    variant (deployment files, scripts) run in the first pass only, to keep CI short."""
    import os

    return os.environ.get("REDIS_BROKER_SPEEDUPS", "true").lower() == "false"

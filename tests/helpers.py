"""Plain functions the tests share; fixtures are in conftest.py, rows in factories.py."""

import time
from pathlib import Path

#: The repository's top folder.
ROOT = Path(__file__).resolve().parent.parent


def wait_until(condition, timeout=15.0, interval=0.05, message="condition"):
    """Poll until condition() is truthy; fail the test with ``message`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout}s waiting for {message}")

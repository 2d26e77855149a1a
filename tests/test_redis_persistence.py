"""Workers say at start when Redis could lose queued messages."""

import subprocess
import sys

import pytest
import redis

from notifications.broker import persistence_warnings, redis_config_warnings
from tests.helpers import ROOT


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"appendonly": "no", "save": "", "maxmemory-policy": "noeviction"}, ["keeps no data on disk"]),
        ({"appendonly": "yes", "save": "", "maxmemory-policy": "noeviction"}, []),
        ({"appendonly": "no", "save": "3600 1", "maxmemory-policy": "noeviction"}, []),
        ({"appendonly": "yes", "save": "", "maxmemory-policy": "allkeys-lru"}, ["evicts keys when full"]),
    ],
)
def test_configurations_that_lose_messages_are_named(config, expected):
    warnings = redis_config_warnings(config)

    assert len(warnings) == len(expected)
    for warning, words in zip(warnings, expected, strict=True):
        assert words in warning


@pytest.mark.redis
def test_the_running_redis_is_read(redis_broker):
    config = redis_broker.client.config_get("appendonly") | redis_broker.client.config_get("save")
    config |= redis_broker.client.config_get("maxmemory-policy")

    assert persistence_warnings(redis_broker.client) == redis_config_warnings(config)


@pytest.mark.redis
def test_rundramatiq_logs_the_warnings_before_starting(process_env):
    code = (
        "import django; django.setup()\n"
        "from notifications.management.commands.rundramatiq import warn_about_redis_persistence\n"
        "warn_about_redis_persistence()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=process_env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    client = redis.Redis.from_url(process_env["REDIS_URL"])
    for warning in persistence_warnings(client):
        assert warning in result.stderr

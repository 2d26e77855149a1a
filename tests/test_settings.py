"""Settings come from the environment only; check the ones that are built from several variables."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRINT_SETTINGS = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'redis': s.REDIS_URL, 'queue': s.QUEUE_ENABLED, 'email_host': s.EMAIL_HOST, "
    "'email_port': s.EMAIL_PORT, 'email_tls': s.EMAIL_USE_TLS, 'debug': s.DEBUG, "
    "'db': s.DATABASES['default']['ENGINE'], 'speedups': s.DRAMATIQ_BROKER['OPTIONS']['speedups']}))"
)


def settings_with(**environment):
    keep = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("REDIS_", "EMAIL_", "DATABASE_"))
    }
    keep.pop("QUEUE_ENABLED", None)
    result = subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS],
        cwd=ROOT,
        env={**keep, "DJANGO_SETTINGS_MODULE": "project.settings", **environment},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif((ROOT / ".env").exists(), reason="a local .env file changes the defaults")
def test_defaults_are_the_embedded_setup():
    values = settings_with()
    assert values["db"] == "django.db.backends.sqlite3"
    assert values["queue"] is False
    assert values["debug"] is False
    assert values["redis"] == "redis://127.0.0.1:6379/0"
    assert values["speedups"] is True


def test_redis_from_host_port_and_tls():
    values = settings_with(REDIS_HOST="cache.internal", REDIS_PORT="6380", REDIS_TLS="true")
    assert values["redis"] == "rediss://cache.internal:6380/0"


def test_redis_url_wins():
    values = settings_with(REDIS_URL="redis://127.0.0.1:6379/3", REDIS_HOST="ignored")
    assert values["redis"] == "redis://127.0.0.1:6379/3"


def test_email_url():
    values = settings_with(EMAIL_URL="smtp+tls://user:pw@smtp.example.com:587", QUEUE_ENABLED="true")
    assert (values["email_host"], values["email_port"], values["email_tls"]) == (
        "smtp.example.com",
        587,
        True,
    )
    assert values["queue"] is True


def test_broker_speedups_can_be_turned_off():
    assert settings_with(REDIS_BROKER_SPEEDUPS="false")["speedups"] is False


def run_project(*arguments, **environment):
    keep = {name: value for name, value in os.environ.items() if name not in ("SECRET_KEY", "DEBUG")}
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=ROOT,
        env={**keep, "DJANGO_SETTINGS_MODULE": "project.settings", **environment},
        capture_output=True,
        text=True,
    )


def test_without_debug_a_missing_secret_key_stops_the_start():
    result = run_project("manage.py", "check")

    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_debug_runs_on_the_development_key():
    result = run_project("-c", "import django; django.setup()", DEBUG="true")

    assert result.returncode == 0, result.stderr


def test_https_settings_from_the_environment_satisfy_check_deploy():
    https = {
        "SECRET_KEY": "a-long-random-production-key-" + "x" * 40,
        "SECURE_SSL_REDIRECT": "true",
        "SECURE_HSTS_SECONDS": "31536000",
        "SESSION_COOKIE_SECURE": "true",
        "CSRF_COOKIE_SECURE": "true",
    }
    plain = run_project("manage.py", "check", "--deploy", SECRET_KEY=https["SECRET_KEY"])
    secure = run_project("manage.py", "check", "--deploy", **https)

    warnings = ("security.W004", "security.W008", "security.W012", "security.W016")
    assert all(code in plain.stderr for code in warnings), plain.stderr
    assert not any(code in secure.stderr for code in warnings), secure.stderr


def test_postgresql_connections_are_bounded_in_time():
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps(s.DATABASES['default']['OPTIONS']))"
    )
    result = run_project(
        "-c",
        code,
        SECRET_KEY="k",
        DATABASE_URL="postgres://u@127.0.0.1:5432/d",
        DATABASE_CONNECT_TIMEOUT="3",
        DATABASE_STATEMENT_TIMEOUT_MS="1500",
    )

    options = json.loads(result.stdout.strip().splitlines()[-1])
    assert options["connect_timeout"] == 3
    assert options["options"] == "-c statement_timeout=1500"
    assert options["tcp_user_timeout"] == 30_000

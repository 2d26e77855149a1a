"""What a process says when it starts, and what every command no longer says."""

import io
import subprocess
import sys

from notifications.broker import RedisBroker
from notifications.startup import describe_mode
from tests.conftest import actors_moved_to
from tests.helpers import ROOT

#: A development checkout: DEBUG on, SQLite, no Twilio, no .env, no queue.
DEVELOPMENT = {"PATH": "/usr/bin:/bin", "DEBUG": "true", "DATABASE_URL": "sqlite:///:memory:"}


def run(*arguments, **environment):
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=ROOT,
        env={**DEVELOPMENT, **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_queue_off_and_every_channel_configured(settings):
    settings.QUEUE_ENABLED = False
    assert describe_mode() == (
        "queue off (QUEUE_ENABLED=false): notifications are sent in the calling process; "
        "channels configured: email, sms, whatsapp, in_app"
    )


def test_a_channel_missing_a_setting_is_named_with_it(settings):
    settings.QUEUE_ENABLED = False
    settings.TWILIO_WHATSAPP_FROM = ""
    assert describe_mode().endswith(
        "channels configured: email, sms, in_app; not configured: whatsapp (needs TWILIO_WHATSAPP_FROM)"
    )


def test_queue_on_names_the_broker_without_its_password(settings):
    settings.QUEUE_ENABLED = True
    broker = RedisBroker(url="redis://:s3cret@10.0.0.7:6380/4", middleware=[])
    with actors_moved_to(broker):
        mode = describe_mode()
    assert mode.startswith("queue on, broker redis://10.0.0.7:6380/4;")
    assert "s3cret" not in mode


def test_a_development_command_prints_no_channel_warning_and_no_env_file_line():
    result = run("manage.py", "check")
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "notifications.W00" not in output
    assert ".env" not in output
    assert "System check identified no issues" in output


def test_the_deployment_checks_still_name_the_missing_twilio_settings():
    result = run("manage.py", "check", "--deploy")
    assert "(notifications.W001) The sms channel needs the TWILIO_ACCOUNT_SID setting" in result.stderr
    assert "(notifications.W002) The whatsapp channel needs" in result.stderr


def test_the_web_process_logs_its_mode_once_at_start():
    code = "import project.wsgi, project.urls"
    result = run("-c", code, DJANGO_SETTINGS_MODULE="project.settings", TWILIO_ACCOUNT_SID="AC1")
    lines = [line for line in result.stderr.splitlines() if "INFO notifications: web:" in line]
    assert len(lines) == 1, result.stderr
    assert lines[0].endswith(
        "web: queue off (QUEUE_ENABLED=false): notifications are sent in the calling process; "
        "channels configured: email, in_app; not configured: sms (needs TWILIO_AUTH_TOKEN), "
        "whatsapp (needs TWILIO_AUTH_TOKEN)"
    )


def test_the_scheduler_says_its_mode_before_periodiq_starts(monkeypatch, caplog):
    from django.core.management import call_command

    started = []
    monkeypatch.setattr("os.execvp", lambda path, arguments: started.append(arguments))
    caplog.set_level("INFO", logger="notifications")

    call_command("runperiodiq", stdout=io.StringIO())

    assert started and started[0][1] == "django_dramatiq.setup"
    [record] = [record for record in caplog.records if record.name == "notifications"]
    assert record.getMessage().startswith("scheduler: queue ")

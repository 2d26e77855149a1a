"""What operators run: system checks, the periodic scheduler and its jobs."""

import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone
from periodiq import CronSpec

from failedjobs import tasks
from failedjobs.models import FailedJob
from notifications.checks import check_channel_settings
from tests.factories import failed_job

ROOT = Path(__file__).resolve().parent.parent


def test_check_names_the_missing_twilio_setting(settings):
    settings.TWILIO_WHATSAPP_FROM = ""
    [warning] = check_channel_settings(None)
    assert warning.id == "notifications.W002"
    assert "TWILIO_WHATSAPP_FROM" in warning.msg


def test_check_is_quiet_when_twilio_is_configured():
    assert check_channel_settings(None) == []


def test_periodic_jobs_are_scheduled():
    assert isinstance(tasks.reconcile_dead_letters.options["periodic"], CronSpec)
    assert str(tasks.purge_failed_jobs.options["periodic"]) == "17 3 * * *"


@pytest.mark.django_db
def test_purge_job_applies_the_retention(settings):
    settings.FAILED_JOBS_RETENTION_DAYS = 10
    failed_job("sms", message_id="old", failed_at=timezone.now() - timedelta(days=11))
    failed_job("sms", message_id="new")
    tasks.purge_failed_jobs()
    assert list(FailedJob.objects.values_list("message_id", flat=True)) == ["new"]


def test_runperiodiq_starts_the_scheduler_with_both_jobs(tmp_path):
    log = tmp_path / "periodiq.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runperiodiq"], cwd=ROOT, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "purge_failed_jobs" not in log.read_text():
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=10)
    text = log.read_text()
    assert "reconcile_dead_letters" in text and "purge_failed_jobs" in text, text


@pytest.mark.django_db
def test_migrations_are_up_to_date():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.parametrize(("environment", "expected"), [(None, "1"), ("", ""), ("1", "1")])
def test_rundramatiq_starts_workers_without_traceback_markers_unless_told(monkeypatch, environment, expected):
    import os

    from django_dramatiq.management.commands import rundramatiq

    if environment is None:
        monkeypatch.delenv("PYTHONNODEBUGRANGES", raising=False)
    else:
        monkeypatch.setenv("PYTHONNODEBUGRANGES", environment)
    started = []
    monkeypatch.setattr(
        rundramatiq.os, "execvp", lambda path, args: started.append(os.environ["PYTHONNODEBUGRANGES"])
    )

    call_command("rundramatiq", "--processes", "1")

    assert started == [expected]

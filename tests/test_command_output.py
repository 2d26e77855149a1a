"""The management commands of both apps: help for every option, progress on long runs, --verbosity."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command, get_commands, load_command_class
from django.core.management.base import OutputWrapper
from django.utils import timezone

from failedjobs import progress
from failedjobs.models import FailedJob
from notifications.models import Delivery
from tests.factories import failed_job, new_delivery

#: Options every Django command has, with Django's own help.
DJANGO_OPTIONS = {
    "--version",
    "--verbosity",
    "--settings",
    "--pythonpath",
    "--traceback",
    "--no-color",
    "--force-color",
    "--skip-checks",
    "--help",
}


def app_commands():
    return sorted(name for name, app in get_commands().items() if app in ("notifications", "failedjobs"))


def test_the_apps_commands_are_all_found():
    commands = set(app_commands())
    assert {"retry_failed", "purge_failed_jobs", "reconcile_dead_letters", "runperiodiq"} <= commands
    assert {"dispatch_due", "purge_notifications", "notifications_health", "rundramatiq"} <= commands


@pytest.mark.parametrize("name", app_commands())
def test_every_option_has_help(name):
    command = load_command_class(get_commands()[name], name)
    parser = command.create_parser("manage.py", name)
    assert command.help, f"{name} has no help"
    for action in parser._actions:  # argparse has no public list of a parser's arguments
        label = "/".join(action.option_strings) or action.dest
        if set(action.option_strings) & DJANGO_OPTIONS:
            continue
        assert action.help, f"manage.py {name}: {label} has no help text"


def run(name, *args):
    out = StringIO()
    call_command(name, *args, stdout=out)
    return out.getvalue().splitlines()


def test_at_the_default_verbosity_progress_is_printed_at_most_every_interval(monkeypatch):
    clock = iter([0.0, 0.5, 2.5, 3.0, 5.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = StringIO()
    command = type("Command", (), {"stdout": OutputWrapper(out)})()
    report = progress.progress_printer(command, 1, "retried")
    for done in (1000, 2000, 3000, 4000):  # at 0.5 s, 2.5 s, 3 s and 5 s
        report(done)
    assert out.getvalue().splitlines() == [
        "  retried 2,000 so far (800/s)",
        "  retried 4,000 so far (800/s)",
    ]


def test_at_verbosity_0_nothing_is_printed(monkeypatch):
    monkeypatch.setattr(progress.time, "monotonic", iter([0.0, 100.0]).__next__)
    out = StringIO()
    command = type("Command", (), {"stdout": OutputWrapper(out)})()
    progress.progress_printer(command, 0, "retried")(1000)
    assert out.getvalue() == ""


@pytest.mark.django_db
def test_retry_failed_prints_each_batch_at_verbosity_2(stub_broker):
    for _ in range(25):
        failed_job("sms")
    lines = run("retry_failed", "--all", "--batch-size", "10", "--verbosity", "2")
    assert [line.split(" (")[0] for line in lines] == [
        "  retried 10 so far",
        "  retried 20 so far",
        "  retried 25 so far",
        "retried 25, skipped 0",
    ]
    assert stub_broker.queues["sms"].qsize() == 25


@pytest.mark.django_db
def test_retry_failed_says_nothing_at_verbosity_0(stub_broker):
    failed_job("sms")
    assert run("retry_failed", "--all", "--verbosity", "0") == []
    assert FailedJob.objects.get().status == FailedJob.Status.RETRIED


@pytest.mark.django_db
def test_purge_failed_jobs_deletes_in_batches_with_progress(settings):
    settings.FAILED_JOBS_RETENTION_DAYS = 10
    old = timezone.now() - timedelta(days=20)
    for _ in range(12):
        failed_job("sms", failed_at=old)
    for _ in range(3):
        failed_job("sms", failed_at=old, status=FailedJob.Status.RESOLVED)
    kept = failed_job("sms")
    lines = run("purge_failed_jobs", "--batch-size", "5", "-v", "2")
    assert [line.split(" (")[0] for line in lines] == [
        "  deleted 5 so far",
        "  deleted 10 so far",
        "  deleted 12 so far",
        "  deleted 15 so far",
        "deleted 15",
    ]
    assert list(FailedJob.objects.all()) == [kept]
    assert run("purge_failed_jobs", "--verbosity", "0") == []


@pytest.mark.django_db
def test_purge_notifications_progress_counts_both_kinds(django_user_model):
    from notifications.models import InAppNotification

    user = django_user_model.objects.create(username="ada")
    long_ago = timezone.now() - timedelta(days=400)
    for _ in range(3):
        InAppNotification.objects.create(recipient=user, title="old", read_at=long_ago)
    for _ in range(4):
        row = new_delivery(status=Delivery.Status.SENT)
        Delivery.objects.filter(pk=row.pk).update(created_at=long_ago, updated_at=long_ago)
    lines = run("purge_notifications", "--batch-size", "2", "--verbosity", "2")
    assert [line.split(" (")[0] for line in lines] == [
        "  deleted 2 so far",
        "  deleted 3 so far",
        "  deleted 5 so far",
        "  deleted 7 so far",
        "deleted 4 deliveries, 3 read in-app notifications",
    ]


@pytest.mark.django_db
def test_dispatch_due_progress_and_silence(stub_broker):
    due = timezone.now() - timedelta(minutes=1)
    for _ in range(5):
        new_delivery(status=Delivery.Status.SCHEDULED, send_at=due, context={"text": "hi"})
    lines = run("dispatch_due", "--batch-size", "2", "--verbosity", "2")
    assert [line.split(" (")[0] for line in lines] == [
        "  dispatched 2 so far",
        "  dispatched 4 so far",
        "  dispatched 5 so far",
        "enqueued 5 due, 0 again, 0 left sending, 0 held whose circuit breaker closed",
    ]
    assert stub_broker.queues["sms"].qsize() == 5
    assert run("dispatch_due", "--verbosity", "0") == []


def test_reconcile_dead_letters_says_nothing_at_verbosity_0(redis_broker, transactional_db):
    assert run("reconcile_dead_letters") == ["recovered 0"]
    assert run("reconcile_dead_letters", "--verbosity", "0") == []

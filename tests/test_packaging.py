"""The apps in a host project: build the wheel, install it apart, and send from a minimal Django project."""

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from notifications.rendering import find_template

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "notifications" / "templates" / "notifications"
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.pyc", ".*_cache", "build", "dist", "*.egg-info", "results", "*.sqlite3"
)

# Everything a host project sets: no NOTIFICATIONS_*, TWILIO_*, QUEUE_ENABLED or other app setting.
# TEMPLATES is Django's own (startproject writes it); its default is no template engine at all.
HOST_SETTINGS = """
SECRET_KEY = "packaging-test"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "notifications",
    "django_dramatiq",
    "failedjobs",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
DRAMATIQ_BROKER = {
    "BROKER": "dramatiq.brokers.stub.StubBroker",
    "MIDDLEWARE": [
        "dramatiq.middleware.AgeLimit",
        "dramatiq.middleware.TimeLimit",
        "dramatiq.middleware.Callbacks",
        "dramatiq.middleware.Retries",
        "periodiq.PeriodiqMiddleware",
        "failedjobs.middleware.FailedJobMiddleware",
    ],
}
"""

# Prints one JSON line: where the apps came from, and what was sent.
HOST_SCRIPT = """
import io
import json

import django

django.setup()

from django.core import mail
from django.core.management import call_command

import notifications
from notifications.services import NotificationsService

call_command("migrate", verbosity=0)
call_command("check", fail_level="ERROR", stdout=io.StringIO(), stderr=io.StringIO())
service = NotificationsService()
plain = service.send_email("ada@example.com", subject="Hi", text="Hello")
url = "https://example.com/verify"
subjects = {}
for language in (None, "fr", "de"):
    delivery = service.send_verification_email("ada@example.com", verification_url=url, language=language)
    delivery.refresh_from_db()
    subjects[str(language)] = [delivery.status, mail.outbox[-1].subject]
plain.refresh_from_db()
print(json.dumps({
    "notifications": notifications.__file__,
    "plain": [plain.status, mail.outbox[0].subject, mail.outbox[0].body.strip()],
    "verification": subjects,
    "emails": len(mail.outbox),
}))
"""


def build_requirements_installed() -> bool:
    """Whether this Python already has pyproject's build requirements, so that pip needs no download."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for line in pyproject["build-system"]["requires"]:
        requirement = Requirement(line)
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            return False
        if not requirement.specifier.contains(installed, prereleases=True):
            return False
    return True


def pip(*arguments: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *arguments, "--quiet"], check=True, timeout=180)


def build_wheel(work: Path) -> Path:
    """Build from a copy of the checkout, so that setuptools' build/ and egg-info stay out of it."""
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    isolation = ["--no-build-isolation"] if build_requirements_installed() else []
    pip("wheel", str(source), "--no-deps", "-w", str(work / "dist"), *isolation)
    (wheel,) = (work / "dist").glob("*.whl")
    return wheel


def write_host_project(directory: Path) -> None:
    directory.mkdir()
    (directory / "settings.py").write_text(HOST_SETTINGS)
    (directory / "send_one.py").write_text(HOST_SCRIPT)


def run_host_script(site: Path, host: Path) -> dict:
    leave_out = ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "DATABASE_URL", "REDIS_URL")
    env = {name: value for name, value in os.environ.items() if name not in leave_out}
    env |= {"DJANGO_SETTINGS_MODULE": "settings", "PYTHONPATH": os.pathsep.join([str(site), str(host)])}
    result = subprocess.run(
        [sys.executable, "send_one.py"], cwd=host, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def subject_of(template: str, language: str) -> str:
    return (TEMPLATES / "email" / template / language / "subject.txt").read_text().strip()


@pytest.mark.packaging
def test_the_wheel_installs_into_a_minimal_project_and_sends(tmp_path):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names if ".dist-info/" not in name} == {
        "notifications",
        "failedjobs",
    }
    assert "notifications/templates/notifications/email/verification/en/subject.txt" in names
    assert "failedjobs/templates/admin/failedjobs/failedjob/change_list.html" in names
    assert "notifications/migrations/0001_initial.py" in names
    assert "failedjobs/management/commands/retry_failed.py" in names
    assert "notifications/templatetags/notification_tags.py" in names

    site, host = tmp_path / "site", tmp_path / "host"
    pip("install", "--no-deps", "--target", str(site), str(wheel))
    write_host_project(host)
    assert not host.is_relative_to(ROOT)

    result = run_host_script(site, host)

    assert Path(result["notifications"]).is_relative_to(site)
    assert result["plain"] == ["sent", "Hi", "Hello"]
    english, french = subject_of("verification", "en"), subject_of("verification", "fr")
    assert result["verification"] == {
        "None": ["sent", english],
        "fr": ["sent", french],
        "de": ["sent", english],  # no German templates: English
    }
    assert result["emails"] == 4


def test_a_language_without_templates_falls_back_to_english_whatever_the_language_code(settings):
    # Django's default LANGUAGE_CODE, "en-us", has no templates of its own; plain SMS exist in English only.
    settings.LANGUAGE_CODE = "en-us"
    template = find_template("notifications/sms/plain/{language}.txt", "fr")
    assert template.origin.name == str(TEMPLATES / "sms" / "plain" / "en.txt")

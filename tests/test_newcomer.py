"""A new team's first hour: the README's examples run as written, the options it names exist, the
settings and scripts it mentions are documented, and the Deliveries list shows what it says."""

import re
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import get_commands, load_command_class

from notifications.models import Delivery, InAppNotification
from tests.factories import new_delivery
from tests.helpers import ROOT, broker_speedups_off

README = (ROOT / "README.md").read_text()
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def section(title):
    """The README's text from the heading ``title`` to the next heading of the same level."""
    level = title.split(" ")[0]
    start = README.index(f"\n{title}\n")
    end = README.find(f"\n{level} ", start + len(title) + 2)
    return README[start : end if end != -1 else None]


def python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


#: The section's examples; a block that only sets a setting (WhatsApp templates) is not one.
SENDING = [
    block
    for block in python_blocks(section("## Sending notifications"))
    if not block.startswith("NOTIFICATIONS_")
]


def test_the_sending_section_has_its_three_examples():
    assert len(SENDING) == 3
    assert "send_verification_email" in SENDING[0]
    assert "send_sms" in SENDING[1]
    assert "reschedule_appointment_reminders" in SENDING[2]


@pytest.mark.django_db(transaction=True)  # messages go on commit
def test_the_sending_examples_run_as_written(settings, fake_twilio):
    settings.QUEUE_ENABLED = False  # the default mode: sent in the caller
    get_user_model().objects.create_user("admin")  # made by scripts/run
    namespace = {}
    for block in SENDING:
        exec(compile(block, "README.md", "exec"), namespace)
    assert len(mail.outbox) == 5
    assert InAppNotification.objects.get().title == "Report ready"
    # Two reminders and two texts reached Twilio; the appointment's scheduled reminders were moved,
    # then cancelled with the appointment.
    assert len(fake_twilio.messages) == 4
    statuses = set(Delivery.objects.values_list("status", flat=True))
    assert statuses == {Delivery.Status.SENT, Delivery.Status.CANCELLED}


@pytest.mark.skipif(
    broker_speedups_off(), reason="independent of the broker's speed-ups: CI's first pass runs it"
)
def test_the_first_example_runs_in_a_fresh_checkouts_shell(tmp_path):
    """As a newcomer pastes it: manage.py shell on the default settings, after scripts/run's setup."""
    env = {"PATH": "/usr/bin:/bin", "DEBUG": "true", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}

    def manage(*arguments, **options):
        command = [sys.executable, "manage.py", *arguments]
        return subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, **options
        )

    assert manage("migrate", "--noinput").returncode == 0
    made = manage("createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com")
    assert made.returncode == 0, made.stderr
    shell = manage("shell", input=SENDING[0])
    assert shell.returncode == 0, shell.stderr
    assert "Traceback" not in shell.stderr, shell.stderr
    assert shell.stdout.count("Subject: ") == 5  # the console email backend
    # The SMS example without Twilio: the error names the setting to set.
    sms = manage("shell", input=SENDING[0] + SENDING[1])
    assert "ChannelNotConfigured: The sms channel needs the TWILIO_ACCOUNT_SID setting" in sms.stderr


def command_options(name):
    command = load_command_class(get_commands()[name], name)
    parser = command.create_parser("manage.py", name)
    return {option for action in parser._actions for option in action.option_strings}


def test_every_option_the_readme_gives_a_command_exists():
    checked = 0
    for line in README.splitlines():
        for mention in line.split("manage.py ")[1:]:
            name = mention.split()[0].strip("`") if mention.split() else ""
            if "=" in name or name not in get_commands():
                continue
            for option in OPTION.findall(mention):
                assert option in command_options(name), f"README: manage.py {name} has no {option}: {line}"
                checked += 1
    assert checked >= 20


#: Options of other tools the README names, and where each is defined.
OTHER_TOOLS = {
    "--unit": ROOT / "scripts/test",
    "--queue": ROOT / "scripts/run",
    "--workload": ROOT / "bench/run.py",
    "--quick": ROOT / "bench/run.py",
    "--repeat": ROOT / "bench/run.py",
    "--pairs": ROOT / "bench/drain_pairs.py",
}
#: Options of programs outside this repository: pip, ruff, Docker's HEALTHCHECK, docker compose up,
#: redis-server, curl, uvicorn.
EXTERNAL = {
    *("--get", "--data-urlencode"),
    *("--host", "--port", "--no-access-log"),  # uvicorn
    *("--no-deps", "--check"),
    *("--interval", "--timeout", "--retries", "--start-period"),
    *("--build", "--scale", "--sentinel"),
}


def test_every_other_option_in_the_readme_exists_somewhere():
    known = set().union(*(command_options(name) for name in get_commands()))
    gunicorn = subprocess.run([ROOT / ".venv/bin/gunicorn", "--help"], capture_output=True, text=True).stdout
    for option in sorted(set(OPTION.findall(README))):
        if option in known or option in EXTERNAL or re.search(rf"(?<![\w-]){option}\b", gunicorn):
            continue
        assert option in OTHER_TOOLS, f"README names {option}, which no command here has"
        assert option in OTHER_TOOLS[option].read_text(), f"{OTHER_TOOLS[option]} has no {option}"


def test_the_readme_no_longer_names_a_worker_timeout_option():
    assert "--worker-timeout" not in README


def test_scripts_runs_variables_are_documented():
    script = (ROOT / "scripts/run").read_text()
    for variable in ("PORT", "ADMIN_USERNAME", "ADMIN_PASSWORD", "REDIS_DIR"):
        assert f"${{{variable}" in script or f"${variable}" in script
        assert f"`{variable}`" in section("## Two commands"), f"README does not document {variable}"


def test_env_example_says_which_lines_switch_modes():
    example = (ROOT / ".env.example").read_text()
    assert "queue mode" in example.lower()
    assert "postgresql" in example.lower()
    for variable in ("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "STATIC_ROOT"):
        assert f"{variable}=" in example, variable


def test_every_setting_the_settings_read_is_in_the_readme_table():
    settings_source = (ROOT / "project/settings.py").read_text()
    read = set(re.findall(r'env(?:\.\w+)?\("([A-Z_]+)"', settings_source))
    table = section("## Configuration")
    missing = sorted(name for name in read if f"`{name}`" not in table)
    assert not missing, f"not in the README's configuration table: {missing}"


@pytest.mark.django_db
def test_the_deliveries_list_shows_provider_id_and_last_error(admin_client):
    new_delivery(status=Delivery.Status.SENT, provider_message_id="SM" + "a" * 32)
    error = "Twilio error 21211: the 'To' number +33612345678 is not valid\nTraceback ..."
    new_delivery(status=Delivery.Status.FAILED, last_error=error)
    page = admin_client.get("/admin/notifications/delivery/").content.decode()
    assert "SM" + "a" * 32 in page
    assert "Twilio error 21211: the &#x27;To&#x27; number" in page
    assert "+33612345678" not in page  # masked
    assert "Traceback" not in page  # the first line only

"""The Dockerfile and compose.yaml, checked without a Docker engine (none runs here).

compose.yaml is validated by ``docker-compose config`` when that is installed, and in every case read
here: its services, their commands (each manage.py command and option exists), their health checks
and their environment (each variable is one the settings read). The Dockerfile's own commands are
run here as it runs them: the runtime requirements, collectstatic, and gunicorn with the image's CMD,
which then serves the health endpoints and the admin's CSS with DEBUG off; the health checks of the
image and of compose.yaml are run against it.
"""

import json
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import requests
import yaml
from django.core.management import get_commands, load_command_class
from selenium.webdriver.common.by import By

from notifications.models import Delivery
from tests.conftest import service_missing
from tests.factories import new_delivery
from tests.fakes.smtp_server import free_port
from tests.helpers import ROOT, broker_speedups_off, database_url, wait_until

DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = ("migrate", "web", "worker", "scheduler")


def instructions(name):
    """The arguments of each Dockerfile instruction ``name``, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line[len(name) + 1 :].strip() for line in joined.splitlines() if line.startswith(f"{name} ")]


def exec_form(arguments):
    return json.loads(arguments[arguments.index("[") :])


CMD = exec_form(instructions("CMD")[-1])
HEALTHCHECK = exec_form(instructions("HEALTHCHECK")[-1])


def test_the_image_is_python_311_slim_and_runs_as_a_user():
    assert instructions("FROM") == ["python:3.11-slim"]
    users = instructions("USER")
    assert users and users[-1] not in ("root", "0")
    assert DOCKERFILE.index("USER ") < DOCKERFILE.index("\nCMD ")
    assert CMD[:2] == ["gunicorn", "project.wsgi"]


def test_compose_has_the_pipelines_services():
    assert set(SERVICES) == {"migrate", "web", "worker", "scheduler", "postgres", "redis"}
    for name in APP_SERVICES:
        assert SERVICES[name]["build"] == "."
        for dependency, condition in SERVICES[name]["depends_on"].items():
            assert dependency in SERVICES
            assert condition["condition"] in ("service_healthy", "service_completed_successfully")


def test_redis_keeps_its_data():
    command = SERVICES["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert "/data" in SERVICES["redis"]["volumes"][0]


def manage_py_options(name):
    command = load_command_class(get_commands()[name], name)
    parser = command.create_parser("manage.py", name)
    return {option for action in parser._actions for option in action.option_strings}


@pytest.mark.parametrize("service", ["migrate", "worker", "scheduler"])
def test_each_manage_py_command_and_option_exists(service):
    command = SERVICES[service]["command"]
    assert command[:2] == ["python", "manage.py"]
    name, *arguments = command[2:]
    assert name in get_commands()
    options = [argument for argument in arguments if argument.startswith("--")]
    assert set(options) <= manage_py_options(name)


def test_the_web_service_runs_the_images_command():
    assert SERVICES["web"]["command"] == CMD


def test_health_checks_are_wired_to_the_endpoints_and_the_command():
    assert "/healthz" in " ".join(HEALTHCHECK)
    assert "/readyz" in " ".join(SERVICES["web"]["healthcheck"]["test"])
    for service in ("worker", "scheduler"):
        assert SERVICES[service]["healthcheck"]["test"] == [
            "CMD",
            "python",
            "manage.py",
            "notifications_health",
        ]
    assert SERVICES["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    assert SERVICES["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]


def test_every_variable_given_to_the_app_is_one_the_settings_read():
    settings_source = (ROOT / "project/settings.py").read_text()
    read = set(re.findall(r'env(?:\.\w+)?\("([A-Z_]+)"', settings_source)) | {"EMAIL_URL"}
    given = set(SERVICES["web"]["environment"])
    assert given <= read, f"not read by project/settings.py: {sorted(given - read)}"
    for service in APP_SERVICES:
        assert SERVICES[service]["environment"] == SERVICES["web"]["environment"]


@pytest.mark.skipif(
    broker_speedups_off(), reason="independent of the broker's speed-ups: CI's first pass runs it"
)
def test_docker_compose_config_accepts_the_file(tmp_path):
    compose = shutil.which("docker-compose")
    if compose is None:
        service_missing("needs docker-compose (apt-get install docker-compose; scripts/setup does as root)")
    env = {"PATH": "/usr/bin:/bin", "SECRET_KEY": "from-the-environment"}
    result = subprocess.run(
        [compose, "--project-directory", str(tmp_path), "-f", str(ROOT / "compose.yaml"), "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["services"]["worker"]["environment"]["SECRET_KEY"] == "from-the-environment"
    assert resolved["services"]["worker"]["environment"]["QUEUE_ENABLED"] == "true"
    # Without a SECRET_KEY, Compose refuses before starting anything.
    refused = subprocess.run(
        [compose, "--project-directory", str(tmp_path), "-f", str(ROOT / "compose.yaml"), "config"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "set SECRET_KEY" in refused.stderr


def test_the_runtime_requirements_leave_the_test_tools_out(tmp_path):
    [install] = [command for command in instructions("RUN") if "requirements.txt" in command]
    selection = install.split("&&")[0].replace("/tmp/runtime.txt", str(tmp_path / "runtime.txt"))
    subprocess.run(selection, shell=True, cwd=ROOT, check=True)
    runtime = (tmp_path / "runtime.txt").read_text()
    for package in ("Django==", "dramatiq", "gunicorn==", "whitenoise==", "psycopg[binary]==", "redis=="):
        assert package in runtime
    for package in ("pytest", "selenium", "ruff", "mypy", "django-stubs"):
        assert package not in runtime
    # What the image installs is what this checkout is tested with: pip has nothing to add.
    dry_run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--no-deps",
            "-r",
            str(tmp_path / "runtime.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dry_run.returncode == 0, dry_run.stderr
    assert "Would install" not in dry_run.stdout


@pytest.fixture
def image_env(process_env, tmp_path):
    """The environment of a container of the image, on this machine's services: DEBUG off, the
    Dockerfile's static files in a temporary STATIC_ROOT, python and gunicorn from .venv."""
    env = {**process_env, "STATIC_ROOT": str(tmp_path / "static"), "DEBUG": "false"}
    env["PATH"] = f"{ROOT / '.venv/bin'}:/usr/bin:/bin"
    env["DATABASE_URL"] = database_url()
    return env


@pytest.fixture
def image_server(image_env, tmp_path):
    """The Dockerfile's collectstatic, then gunicorn with the image's CMD (one worker, a free port);
    yields its base URL and log."""
    [collectstatic] = [command for command in instructions("RUN") if "collectstatic" in command]
    subprocess.run(collectstatic, shell=True, cwd=ROOT, env=image_env, check=True, capture_output=True)
    assert (tmp_path / "static/staticfiles.json").is_file()
    assert (tmp_path / "static/admin/css/base.css.gz").is_file()

    port = free_port()
    command = [argument.replace("0.0.0.0:8000", f"127.0.0.1:{port}") for argument in CMD]
    command[command.index("--workers") + 1] = "1"
    check = subprocess.run(
        [*command, "--check-config"], cwd=ROOT, env=image_env, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr

    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(command, cwd=ROOT, env=image_env, stdout=output, stderr=output)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{base}/healthz"), timeout=30, message=f"gunicorn (log: {log})")
        yield base, log
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.skipif(
    broker_speedups_off(), reason="independent of the broker's speed-ups: CI's first pass runs it"
)
def test_the_image_serves_health_and_the_admins_css_with_debug_off(image_server, image_env):
    base, log = image_server
    assert requests.get(f"{base}/readyz", headers={"Host": "localhost"}, timeout=10).json()["status"] == "ok"
    login = requests.get(f"{base}/admin/login/", headers={"Host": "localhost"}, timeout=10)
    assert login.status_code == 200
    stylesheet = re.search(r'href="(/static/admin/css/base\.[0-9a-f]+\.css)"', login.text)[1]
    css = requests.get(
        f"{base}{stylesheet}", headers={"Host": "localhost", "Accept-Encoding": "gzip"}, timeout=10
    )
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")
    assert "immutable" in css.headers["Cache-Control"]
    assert "body" in css.text

    # The health checks of the image and of compose.yaml, as Docker would run them.
    port = base.rsplit(":", 1)[1]
    for test in (HEALTHCHECK, SERVICES["web"]["healthcheck"]["test"][1:]):
        probe = [argument.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for argument in test]
        assert subprocess.run(probe, cwd=ROOT, env=image_env, timeout=30).returncode == 0, probe
    worker_probe = SERVICES["worker"]["healthcheck"]["test"][1:]
    assert subprocess.run(worker_probe, cwd=ROOT, env=image_env, timeout=60).returncode == 0
    assert "INFO notifications: web: queue on, broker redis://127.0.0.1:" in log.read_text()


@pytest.mark.skipif(
    broker_speedups_off(), reason="independent of the broker's speed-ups: CI's first pass runs it"
)
def test_an_operator_gets_a_styled_admin_from_the_image_in_a_browser(image_server, image_env, browser):
    base, _ = image_server
    password = {**image_env, "DJANGO_SUPERUSER_PASSWORD": "a-long-password"}
    made = [
        "python",
        "manage.py",
        "createsuperuser",
        "--noinput",
        "--username",
        "operator",
        "--email",
        "o@example.com",
    ]
    subprocess.run(made, cwd=ROOT, env=password, check=True, capture_output=True, timeout=60)
    new_delivery(status=Delivery.Status.SENT, provider_message_id="SM" + "b" * 32)

    browser.get(f"{base}/admin/login/")
    header = browser.find_element(By.ID, "header")
    # The admin's stylesheet applied: its header colour, not the browser's transparent default.
    assert header.value_of_css_property("background-color") not in ("rgba(0, 0, 0, 0)", "transparent")
    browser.find_element(By.NAME, "username").send_keys("operator")
    browser.find_element(By.NAME, "password").send_keys("a-long-password")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_until(lambda: "/admin/login/" not in browser.current_url, timeout=10, message="the sign-in")

    browser.get(f"{base}/admin/notifications/delivery/")
    columns = [cell.text.lower() for cell in browser.find_elements(By.CSS_SELECTOR, "#result_list thead th")]
    assert "provider message id" in columns
    assert "last error" in columns
    assert "SM" + "b" * 32 in browser.find_element(By.ID, "result_list").text


def answers(url):
    try:
        return requests.get(url, headers={"Host": "localhost"}, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_the_worker_health_check_fails_when_redis_is_down(image_env):
    probe = SERVICES["worker"]["healthcheck"]["test"][1:]
    down = {**image_env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    result = subprocess.run(probe, cwd=ROOT, env=down, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Unhealthy: redis failed." in result.stderr
    assert shlex.join(probe) == "python manage.py notifications_health"

"""A channel is declared in one place: NOTIFICATIONS_CHANNELS."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from notifications.channels import all_channels, get_channel
from notifications.exceptions import InvalidNotification
from notifications.models import Delivery
from notifications.services import NotificationsService
from notifications.tasks import ACTORS

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
import dramatiq
from notifications.models import Delivery
from notifications.services import NotificationsService
from tests.extra_channel import SENT

delivery = NotificationsService().notify("pigeon", "Ada", "plain", {"text": "hello"})
delivery.refresh_from_db()
actor = dramatiq.get_broker().get_actor("deliver_pigeon")
print(json.dumps({
    "status": delivery.status,
    "provider_message_id": delivery.provider_message_id,
    "sent": SENT,
    "queue": actor.queue_name,
    "choices": [name for name, _ in Delivery._meta.get_field("channel").choices],
    "actors": sorted(name for name in dramatiq.get_broker().actors if name.startswith("deliver_")),
}))
"""


def test_the_default_registry_gives_each_channel_its_queue_and_actor():
    names = [channel.name for channel in all_channels()]

    assert names == ["email", "sms", "whatsapp", "in_app"]
    for name in names:
        assert (ACTORS[name].actor_name, ACTORS[name].queue_name) == (f"deliver_{name}", name)
    assert [value for value, _ in Delivery._meta.get_field("channel").choices] == names
    assert get_channel("whatsapp").label == "WhatsApp"


def test_a_channel_added_to_the_setting_gets_an_actor_a_queue_and_delivers():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.extra_channel.settings"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {
        "status": "sent",
        "provider_message_id": "pigeon-1",
        "sent": ["Ada: hello"],
        "queue": "pigeon",
        "choices": ["email", "pigeon"],
        "actors": ["deliver_email", "deliver_pigeon"],
    }


def test_an_unknown_channel_is_refused_at_call_time():
    with pytest.raises(InvalidNotification, match="Unknown channel 'fax'; use one of: email, sms"):
        NotificationsService().notify("fax", "+33612345678", "plain", {})

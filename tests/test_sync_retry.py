"""Retrying with the queue off: a process killed part-way never makes the next retry send twice."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from django.core.management import call_command

from failedjobs.models import FailedJob
from notifications.models import Delivery
from notifications.services import NotificationsService
from tests.helpers import ROOT, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

RECIPIENTS = [f"+336123456{number:02d}" for number in range(40)]


@pytest.fixture
def failed_sms(settings, fake_twilio):
    """40 SMS that Twilio refused, each a failed job, with the queue off."""
    settings.QUEUE_ENABLED = False
    fake_twilio.fail_always(400, 21211)
    for number in RECIPIENTS:
        NotificationsService().send_sms(number, text="second chance")
    assert FailedJob.objects.filter(status=FailedJob.Status.FAILED).count() == len(RECIPIENTS)
    fake_twilio.reset()
    return fake_twilio


def test_a_synchronous_retry_killed_part_way_sends_no_one_twice(failed_sms, process_env):
    failed_sms.on_accept = lambda message: time.sleep(0.05)  # a slow provider: the kill lands mid-send
    command = [sys.executable, "manage.py", "retry_failed", "--all"]
    env = {**process_env, "QUEUE_ENABLED": "false"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    try:
        wait_until(lambda: len(failed_sms.messages) >= 10, timeout=30, message="ten SMS sent")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    sent_before_the_kill = len(failed_sms.messages)
    assert sent_before_the_kill < len(RECIPIENTS), "the retry finished before it could be killed"

    call_command("retry_failed", "--all")

    sends = Counter(message["to"] for message in failed_sms.messages)
    assert sends.most_common(1)[0][1] == 1, f"sent twice: {[to for to, n in sends.items() if n > 1]}"
    statuses = Counter(Delivery.objects.values_list("status", flat=True))
    # At most one was in the provider's hands when the process died (its outcome is unknown), and at
    # most one was marked retried but not yet run; every other is sent.
    assert statuses[Delivery.Status.SENT] >= len(RECIPIENTS) - 2, statuses
    assert len(sends) == statuses[Delivery.Status.SENT] + statuses[Delivery.Status.SENDING]

"""A dead worker's unfinished messages go back to their queues within a bound, not by chance."""

import time
from collections import Counter

import pytest
from dramatiq import get_broker

from notifications.broker import redeliver_orphaned_messages
from notifications.models import Delivery
from notifications.services import NotificationsService
from tests.helpers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

HEARTBEAT_TIMEOUT_S = 2  # the worker_process fixture's DRAMATIQ_HEARTBEAT_TIMEOUT_MS


def statuses():
    return Counter(Delivery.objects.values_list("status", flat=True))


def test_the_sweep_gives_a_killed_workers_prefetched_messages_to_another(worker_process, fake_twilio):
    # No maintenance by chance at all: only the sweep can bring the dead worker's messages back.
    no_chance = {"DRAMATIQ_MAINTENANCE_CHANCE": "0"}
    fake_twilio.on_accept = lambda message: time.sleep(0.3)
    service = NotificationsService()
    for number in range(12):
        service.send_sms(f"+336123456{number:02d}", text="hello")
    first = worker_process(**no_chance)
    fake_twilio.wait_for_messages(1, timeout=30)
    first.kill()
    worker_process(**no_chance)
    # Everything still in the queue is sent; what the dead worker had fetched stays waiting.
    wait_until(lambda: statuses()[Delivery.Status.SENT] >= 6, timeout=30, message="the queue drained")
    time.sleep(1)
    stranded = statuses()[Delivery.Status.QUEUED]
    assert stranded > 0, statuses()

    time.sleep(HEARTBEAT_TIMEOUT_S)
    assert redeliver_orphaned_messages(get_broker()) > 0

    # The prefetched ones are sent; the ones in the provider's hands when it died are filed as
    # DeliveryOutcomeUnknown after the time limit.
    wait_until(lambda: not statuses()[Delivery.Status.QUEUED], timeout=30, message="no delivery left queued")
    sends = Counter(message["to"] for message in fake_twilio.messages)
    assert max(sends.values()) == 1

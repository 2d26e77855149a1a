import socket
import urllib.request

import pytest

from notifications.services import NotificationsService
from tests.factories import failed_job, new_delivery
from tests.helpers import wait_until


def metric_lines(client, **headers):
    response = client.get("/metrics", **headers)
    assert response.status_code == 200
    return response.content.decode().splitlines()


@pytest.mark.django_db
def test_metrics_count_deliveries_failed_jobs_and_dead_letters(client, redis_broker):
    new_delivery("+1", idempotency_key="a", status="sent")
    new_delivery("+1", idempotency_key="b", status="sent")
    new_delivery("a@b.c", channel="email", idempotency_key="c", status="failed")
    failed_job("email", "a@b.c")
    redis_broker.client.zadd("dramatiq:sms.XQ", {"lost-message": 1})

    lines = metric_lines(client)

    assert 'notifications_deliveries{channel="sms",status="sent"} 2.0' in lines
    assert 'notifications_deliveries{channel="email",status="failed"} 1.0' in lines
    assert 'notifications_failed_jobs{queue="email"} 1.0' in lines
    assert 'notifications_dead_letters{queue="sms"} 1.0' in lines


@pytest.mark.django_db
def test_metrics_still_answer_when_redis_is_down(client, unreachable_redis):
    failed_job("sms")

    lines = metric_lines(client)

    assert 'notifications_failed_jobs{queue="sms"} 1.0' in lines
    assert not any(line.startswith("notifications_dead_letters{") for line in lines)


@pytest.mark.django_db
def test_metrics_token_is_required_when_set(client, settings):
    settings.METRICS_TOKEN = "s3cret"
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert metric_lines(client, headers={"Authorization": "Bearer s3cret"})


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_worker_exports_dramatiq_metrics_on_loopback(worker_process, fake_twilio, tmp_path):
    port = free_port()
    worker_process(
        METRICS_ENABLED="true", dramatiq_prom_port=str(port), dramatiq_prom_db=str(tmp_path / "prom")
    )
    NotificationsService().send_sms("+33612345678", text="counted")
    fake_twilio.wait_for_messages(1, timeout=30)

    def scrape():
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
        except OSError:
            return ""

    text = wait_until(
        lambda: (body := scrape()) and 'actor_name="deliver_sms"' in body and body,
        timeout=30,
        message="metrics",
    )
    assert 'dramatiq_messages_total{actor_name="deliver_sms",queue_name="sms"} 1.0' in text

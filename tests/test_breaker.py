"""Circuit breakers per provider and limits per channel, on real Redis, workers and the fake Twilio."""

import io
import json
import logging
import time

import dramatiq
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from failedjobs.models import FailedJob
from notifications import breaker, gate, outbox
from notifications.limits import Limit
from notifications.models import Delivery
from notifications.services import NotificationsService
from tests.factories import new_delivery
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_breakers(monkeypatch):
    """Each process remembers an open breaker for a second: not from one test into the next."""
    monkeypatch.setattr(breaker, "_breakers", {})


@pytest.fixture
def breakers_on(settings):
    settings.NOTIFICATIONS_BREAKER_THRESHOLD = 3
    settings.NOTIFICATIONS_BREAKER_WINDOW_S = 60
    settings.NOTIFICATIONS_BREAKER_OPEN_S = 60
    return settings


def send_sms(count, text="hello"):
    service = NotificationsService()
    return [service.send_sms("+33612345678", text=f"{text} {i}") for i in range(count)]


def twilio_state():
    return breaker.get_breaker("twilio").status().state


def waiting_messages(client, queue="sms"):
    """The messages of a queue waiting in Redis for their delay to end, decoded."""
    return [json.loads(data) for data in client.hvals(f"dramatiq:{queue}.DQ.msgs")]


def test_breaker_opens_after_the_threshold_and_holds_messages_without_spending_attempts(
    breakers_on, fake_twilio, worker, redis_broker, caplog
):
    fake_twilio.fail_always(500, 20500)
    caplog.set_level(logging.WARNING, logger="notifications.breaker")
    deliveries = send_sms(12)
    rows = Delivery.objects.filter(pk__in=[d.pk for d in deliveries])

    wait_until(lambda: twilio_state() == "open", message="the breaker to open")

    def all_waiting():
        waiting = [m["options"] for m in waiting_messages(redis_broker.client)]
        queued = redis_broker.client.llen("dramatiq:sms")  # not taken: the consumer pauses
        held = rows.filter(status=Delivery.Status.HELD).count()
        # A failure made before it opened comes back within the tests' backoff (40 ms), to be held.
        soon = time.time() * 1000 + 50_000
        back_soon = any(options["eta"] < soon for options in waiting if options.get("retries"))
        return len(waiting) + queued + held == 12 and not back_soon and (waiting, queued, held)

    waiting, queued, held = wait_until(all_waiting, message="all 12 waiting in Redis or held")
    seen = fake_twilio.requests_seen
    time.sleep(0.5)

    # The threshold, plus what the 4 worker threads had in flight when it opened; then nothing.
    assert 3 <= seen <= 3 + 4
    assert fake_twilio.requests_seen == seen
    assert FailedJob.objects.count() == 0
    # Those that failed once it was open wait in Redis to come back when the probe is due. Of those
    # the worker had taken, one more comes back for the probe (the carrier) and the others are held
    # in the database until it closes; those it had not taken stay in the queue (with the broker's
    # speed-ups, a queue whose breaker is open is not read). No message of theirs is lost.
    carriers = [options for options in waiting if options.get("held")]
    failed = [options for options in waiting if options.get("retries") and not options.get("held")]
    assert len(carriers) <= 1 and len(failed) == len(waiting) - len(carriers)
    assert held + queued == 12 - len(waiting)
    assert set(rows.values_list("status", flat=True)) <= {Delivery.Status.QUEUED, Delivery.Status.HELD}
    # A hold spends nothing: the attempts counted are the failures there really were.
    assert sum(rows.values_list("attempts", flat=True)) == seen
    assert all(options.get("attempts", 0) == options.get("retries", 0) for options in waiting)
    # The failure that opened it, at least, waits in Redis for the probe (in 60 s).
    assert failed
    assert any("opened after 3 transient failures" in record.getMessage() for record in caplog.records)


def test_breaker_half_opens_probes_and_closes_by_itself(breakers_on, fake_twilio, worker, caplog):
    breakers_on.NOTIFICATIONS_BREAKER_OPEN_S = 1.0
    caplog.set_level(logging.WARNING, logger="notifications.breaker")
    fake_twilio.fail_always(500, 20500)
    deliveries = send_sms(10)
    wait_until(lambda: twilio_state() == "open", message="the breaker to open")
    time.sleep(0.3)  # the requests in flight when it opened are refused too

    fake_twilio.reset()  # the provider is back
    wait_until(
        lambda: Delivery.objects.filter(status=Delivery.Status.SENT).count() == 10,
        timeout=30,
        message="every SMS sent after the outage",
    )

    assert len(fake_twilio.messages) == 10
    assert FailedJob.objects.count() == 0
    assert twilio_state() == "closed"
    assert all(d.attempts <= 3 for d in Delivery.objects.filter(pk__in=[d.pk for d in deliveries]))
    log = [record.getMessage() for record in caplog.records]
    assert any("opened" in line for line in log)
    assert any("half-open" in line for line in log)
    assert any("closed: the provider answered" in line for line in log)


def test_a_failed_probe_opens_the_breaker_again(breakers_on, fake_twilio, worker, caplog):
    breakers_on.NOTIFICATIONS_BREAKER_OPEN_S = 0.3
    caplog.set_level(logging.WARNING, logger="notifications.breaker")
    fake_twilio.fail_always(500, 20500)
    send_sms(5)

    wait_until(
        lambda: any("probe failed" in record.getMessage() for record in caplog.records),
        message="a probe that fails",
    )
    assert FailedJob.objects.count() == 0
    assert twilio_state() in ("open", "half-open")


def test_permanent_errors_do_not_trip_the_breaker(breakers_on, fake_twilio, worker):
    fake_twilio.fail_always(400, 21211, "The 'To' number is not a valid phone number.")
    send_sms(8)

    wait_until(lambda: FailedJob.objects.count() == 8, message="8 failed jobs")
    assert fake_twilio.requests_seen == 8
    assert twilio_state() == "closed"


def test_an_operator_forces_the_breaker_open_then_closed(breakers_on, fake_twilio, worker, redis_broker):
    breakers_on.NOTIFICATIONS_BREAKER_OPEN_S = 1  # held messages look again after this
    out = io.StringIO()
    call_command("circuit_breaker", "twilio", "--open", stdout=out)
    assert "twilio: open (forced open)" in out.getvalue()
    deliveries = send_sms(3)
    time.sleep(1.5)
    held = Delivery.objects.filter(status=Delivery.Status.HELD).count()
    in_redis = redis_broker.client.llen("dramatiq:sms") + len(waiting_messages(redis_broker.client))
    assert held + in_redis == 3  # not taken, or taken and held: none sent, none failed
    assert fake_twilio.requests_seen == 0
    out = io.StringIO()
    call_command("circuit_breaker", stdout=out)
    expected = (
        f"twilio: open (forced open), 0 transient failure(s) in the current run, {held} deliveries held"
    )
    assert expected in out.getvalue()

    out = io.StringIO()
    call_command("circuit_breaker", "twilio", "--close", stdout=out)
    assert (f"{held} held deliveries sent again." in out.getvalue()) == (held > 0)
    sent = Delivery.objects.filter(pk__in=[d.pk for d in deliveries], status=Delivery.Status.SENT)
    wait_until(lambda: sent.count() == 3, message="all three sent")
    assert fake_twilio.requests_seen == 3

    call_command("circuit_breaker", "twilio", "--auto", stdout=io.StringIO())
    out = io.StringIO()
    call_command("circuit_breaker", stdout=out)
    assert "twilio: closed, 0 transient failure(s)" in out.getvalue()
    assert "email: closed" in out.getvalue()


def test_circuit_breaker_command_refuses_unknown_providers(redis_broker):
    with pytest.raises(CommandError, match="Unknown provider 'sendgrid'"):
        call_command("circuit_breaker", "sendgrid", "--open")
    with pytest.raises(CommandError, match="Name the provider"):
        call_command("circuit_breaker", "--open")


def test_metrics_show_each_breaker(client, redis_broker):
    breaker.get_breaker("twilio").force("open")
    lines = client.get("/metrics").content.decode().splitlines()
    assert 'notifications_circuit_breaker_open{mode="open",provider="twilio"} 1.0' in lines
    assert 'notifications_circuit_breaker_open{mode="auto",provider="email"} 0.0' in lines


def test_an_unexpected_exception_keeps_its_full_traceback_on_the_failed_job(fake_twilio, worker, monkeypatch):
    def broken_send(self, message):
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr("notifications.twilio_backends.TwilioBackend.send", broken_send)
    send_sms(1)

    job = wait_until(lambda: FailedJob.objects.first(), message="the failed job")
    assert "RuntimeError: a bug of ours" in job.traceback
    assert "in broken_send" in job.traceback
    assert 'raise RuntimeError("a bug of ours")' in job.traceback


def test_an_expected_provider_failure_is_filed_without_the_sdks_traceback(fake_twilio, worker):
    fake_twilio.fail_always(500, 20500, "Internal error")
    send_sms(1)

    job = wait_until(lambda: FailedJob.objects.first(), timeout=30, message="the failed job")
    assert job.exception_class == "notifications.exceptions.TransientDeliveryError"
    assert "Internal error (twilio error 20500)" in job.exception_message
    assert "TransientDeliveryError: Twilio refused the message: Unable to create record" in job.traceback
    assert "twilio/base" not in job.traceback  # no frame of the SDK's
    assert job.attempts == 6


def test_a_concurrency_limit_lets_through_its_number_at_once(redis_broker):
    limit = Limit(redis_broker.client, "test:concurrency", 2)
    first, _ = limit.acquire()
    second, _ = limit.acquire()
    third, wait = limit.acquire()
    assert first and second and third is None
    assert 0 < wait <= 1000
    limit.release(first)
    assert limit.acquire()[0] is not None


def test_a_rate_limit_counts_a_place_until_a_second_after_the_call_ends(redis_broker):
    limit = Limit(redis_broker.client, "test:rate", 2, window_ms=1000)
    first, _ = limit.acquire()
    second, _ = limit.acquire()
    assert limit.acquire()[0] is None
    limit.release(first)
    limit.release(second)
    token, wait = limit.acquire()
    assert token is None and 900 <= wait <= 1000  # the released places still count for a second
    time.sleep(1.05)
    assert limit.acquire()[0] is not None


def count_in_any_second(times):
    """The most requests in any one-second window (sliding, starting at each request)."""
    times = sorted(times)
    return max(sum(1 for other in times if start <= other < start + 1.0) for start in times)


def test_two_worker_processes_share_the_breaker(worker_process, fake_twilio):
    fake_twilio.fail_always(500, 20500)
    settings = {
        "NOTIFICATIONS_BREAKER_THRESHOLD": "4",
        "NOTIFICATIONS_BREAKER_OPEN_S": "60",
        "NOTIFICATIONS_MIN_BACKOFF_MS": "200",
        "NOTIFICATIONS_MAX_BACKOFF_MS": "400",
    }
    first, second = worker_process(**settings), worker_process(**settings)
    send_sms(30)

    wait_until(lambda: twilio_state() == "open", timeout=30, message="the breaker to open")
    time.sleep(1.0)

    # Apart, each process would have needed 4 failures of its own: 8 at least. Together, 4 and what
    # their 2 x 2 threads had in flight.
    assert fake_twilio.requests_seen < 8
    assert FailedJob.objects.count() == 0
    assert "holding" not in first.log() + second.log()  # no traceback or warning per held message
    waiting = [Delivery.Status.QUEUED, Delivery.Status.HELD]
    assert Delivery.objects.filter(status__in=waiting).count() == 30


def test_the_rate_limit_holds_across_two_workers(worker_process, fake_twilio):
    arrivals = []
    fake_twilio.on_request = lambda: arrivals.append(time.monotonic())
    first = worker_process(NOTIFICATIONS_RATE_LIMITS="sms=5")
    second = worker_process(NOTIFICATIONS_RATE_LIMITS="sms=5")
    deliveries = send_sms(20)

    wait_until(
        lambda: Delivery.objects.filter(status=Delivery.Status.SENT).count() == 20,
        timeout=60,
        message="20 SMS sent",
    )

    assert len(arrivals) == 20
    assert count_in_any_second(arrivals) <= 5
    assert FailedJob.objects.count() == 0
    assert {d.attempts for d in Delivery.objects.filter(pk__in=[d.pk for d in deliveries])} == {1}
    assert "Traceback" not in first.log() + second.log()


def test_the_dispatcher_does_not_take_a_message_waiting_behind_an_open_breaker_for_a_lost_one(
    breakers_on, fake_twilio, worker, redis_broker
):
    breakers_on.NOTIFICATIONS_BREAKER_OPEN_S = 0.2
    breakers_on.NOTIFICATIONS_REDRIVE_AFTER_S = 0.5  # past this, a queued row untouched is "lost"
    breaker.get_breaker("twilio").force("open")
    [delivery] = send_sms(1)
    time.sleep(1.5)

    assert outbox.dispatch_due().redriven == 0
    assert Delivery.objects.get(pk=delivery.pk).status in (Delivery.Status.QUEUED, Delivery.Status.HELD)
    assert fake_twilio.requests_seen == 0

    breaker.get_breaker("twilio").force("auto")
    wait_until(lambda: Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.SENT, message="sent")
    assert fake_twilio.requests_seen == 1


@pytest.mark.skipif(
    not getattr(dramatiq.get_broker(), "speedups", False),
    reason="consumers pause with the broker's speed-ups",
)
def test_a_worker_takes_nothing_from_a_queue_whose_breaker_is_open(
    breakers_on, fake_twilio, worker, redis_broker
):
    breaker.get_breaker("twilio").force("open")
    deliveries = send_sms(20)
    time.sleep(1.5)

    assert redis_broker.client.llen("dramatiq:sms") == 20  # all still in the queue, none taken
    assert not Delivery.objects.filter(status=Delivery.Status.HELD).exists()

    breaker.get_breaker("twilio").force("closed")
    sent = Delivery.objects.filter(pk__in=[d.pk for d in deliveries], status=Delivery.Status.SENT)
    wait_until(lambda: sent.count() == 20, message="all 20 sent within a second or so of the close")
    assert fake_twilio.requests_seen == 20


def test_check_warns_when_breakers_cannot_hold_without_current_message(settings):
    from notifications.checks import check_breaker_middleware

    settings.QUEUE_ENABLED = True
    settings.NOTIFICATIONS_BREAKER_THRESHOLD = 5
    middleware = settings.DRAMATIQ_BROKER["MIDDLEWARE"]
    assert check_breaker_middleware(None) == []

    without = [name for name in middleware if name != "dramatiq.middleware.CurrentMessage"]
    settings.DRAMATIQ_BROKER = {**settings.DRAMATIQ_BROKER, "MIDDLEWARE": without}
    [warning] = check_breaker_middleware(None)
    assert warning.id == "notifications.W010"
    assert "CurrentMessage" in warning.hint

    settings.NOTIFICATIONS_BREAKER_THRESHOLD = 0  # nothing to hold: nothing to say
    assert check_breaker_middleware(None) == []


def test_a_concurrency_limit_keeps_one_sms_at_a_time_at_twilio(settings, fake_twilio, worker):
    settings.NOTIFICATIONS_CONCURRENCY = {"sms": 1}
    arrivals = []
    fake_twilio.on_request = lambda: arrivals.append(time.monotonic())
    fake_twilio.delay_next(0.2, times=5)
    deliveries = send_sms(5)

    wait_until(
        lambda: Delivery.objects.filter(status=Delivery.Status.SENT).count() == 5,
        timeout=30,
        message="5 SMS sent",
    )

    gaps = [later - earlier for earlier, later in zip(sorted(arrivals), sorted(arrivals)[1:], strict=False)]
    assert len(arrivals) == 5
    assert min(gaps) >= 0.19  # each waited for the one before to be answered
    assert {d.attempts for d in Delivery.objects.filter(pk__in=[d.pk for d in deliveries])} == {1}


def hold_rows(count, channel="sms"):
    return [new_delivery(channel=channel, status=Delivery.Status.HELD) for _ in range(count)]


def test_the_scheduler_sends_held_deliveries_again_once_their_breaker_is_closed(breakers_on, redis_broker):
    # Held by a breaker that has closed since, with nobody left to send them (the closer died).
    sms, whatsapp = hold_rows(3), hold_rows(1, channel="whatsapp")
    [email] = hold_rows(1, channel="email")
    breaker.get_breaker("email").force("open")

    assert gate.release_when_closed() == {"twilio": 4}

    statuses = dict(Delivery.objects.values_list("pk", "status"))
    assert {statuses[d.pk] for d in sms + whatsapp} == {Delivery.Status.QUEUED}
    assert statuses[email.pk] == Delivery.Status.HELD
    queued = [json.loads(data) for data in redis_broker.client.hvals("dramatiq:sms.msgs")]
    assert sorted(m["kwargs"]["delivery_id"] for m in queued) == sorted(d.pk for d in sms)


def test_a_half_open_breaker_gets_one_held_delivery_as_its_probe(breakers_on, redis_broker):
    hold_rows(3)
    circuit = breaker.get_breaker("twilio")
    for _ in range(3):
        circuit.failed(probe=False)
    assert twilio_state() == "open"
    assert gate.release_when_closed() == {}

    redis_broker.client.delete(circuit.keys["open"])  # the probe is due
    assert twilio_state() == "half-open"

    assert gate.release_when_closed() == {"twilio": 1}
    assert Delivery.objects.filter(status=Delivery.Status.HELD).count() == 2


def test_held_deliveries_can_be_cancelled(redis_broker):
    [delivery] = hold_rows(1)
    Delivery.objects.filter(topic="").cancel()
    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.CANCELLED


def test_the_pipeline_status_shows_each_breaker_and_what_it_holds(admin_client, redis_broker):
    hold_rows(2)
    hold_rows(1, channel="whatsapp")
    breaker.get_breaker("twilio").force("open")
    out = io.StringIO()

    call_command("notifications_status", stdout=out)

    expected = "twilio: open (forced open), 0 transient failure(s) in the current run, 3 deliveries held"
    assert f"Circuit breaker {expected}" in out.getvalue()
    assert "Circuit breaker email: closed" in out.getvalue()
    html = admin_client.get(reverse("admin:notifications_status")).content.decode()
    assert '<tr class="breaker-twilio"><td>twilio</td>' in html
    assert ">3</a></td></tr>" in html


def test_a_consumer_pauses_while_the_breaker_is_open_or_probing(breakers_on, redis_broker):
    def paused_ms():
        return breaker.CircuitBreaker("twilio", redis_broker.client).paused_ms()  # nothing remembered

    circuit = breaker.get_breaker("twilio")
    assert paused_ms() == 0  # closed
    for _ in range(3):
        circuit.failed(probe=False)
    assert 50_000 < paused_ms() <= 60_000  # open: until the probe is due

    redis_broker.client.delete(circuit.keys["open"])  # half-open: one may go, to probe
    assert paused_ms() == 0
    redis_broker.client.set(circuit.keys["probe"], "1")  # the probe is in flight
    assert paused_ms() == breaker.PROBE_WAIT_MS

    circuit.force("closed")
    assert paused_ms() == 0
    circuit.force("open")
    assert paused_ms() == breaker.LOCAL_MEMORY_MS  # forced open: asked again every second


def test_a_delivery_held_just_as_the_breaker_closed_goes_back_to_its_queue(
    breakers_on, redis_broker, monkeypatch
):
    """The closer sent again what was held a moment before this row was: the row must not stay held."""
    from dramatiq.middleware import CurrentMessage

    from notifications.channels import get_channel
    from notifications.models import DeliveryQuerySet
    from notifications.tasks import ACTORS

    [delivery] = send_sms(1)
    redis_broker.client.delete("dramatiq:sms", "dramatiq:sms.msgs")  # as if a worker had taken it
    circuit = breaker.get_breaker("twilio")
    circuit.force("open")
    redis_broker.client.set(circuit.keys["carrier"], "1")  # another message carries the probe
    hold = DeliveryQuerySet.hold

    def hold_as_it_closes(queryset, pk):
        held = hold(queryset, pk)
        circuit.force("closed")  # the probe came back, and its release ran before this row was held
        return held

    monkeypatch.setattr(DeliveryQuerySet, "hold", hold_as_it_closes)
    payload = {**delivery.payload(), "delivery_id": delivery.pk}
    message = ACTORS["sms"].message(**payload)
    CurrentMessage._MESSAGE.set(message)
    try:
        assert gate.deliver(get_channel("sms"), payload) is None
    finally:
        CurrentMessage._MESSAGE.set(None)

    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.QUEUED
    [waiting] = waiting_messages(redis_broker.client)  # back to its queue, at once
    assert waiting["kwargs"]["delivery_id"] == delivery.pk

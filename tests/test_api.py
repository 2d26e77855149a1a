"""The HTTP API (api/): tokens and sessions, scopes, masking, failed jobs, deliveries, pages, schema."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from openapi_spec_validator import validate

from api.models import ApiToken, hash_key
from failedjobs.admin import EstimatedCountPaginator
from failedjobs.models import FailedJob
from notifications.models import Delivery
from tests.factories import PHONE, failed_job, job_message, new_delivery, staff_client
from tests.helpers import wait_until

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db]

MASKED_PHONE = "+33******78"
EMAIL = "ada.lovelace@example.com"
MASKED_EMAIL = "a***e@example.com"
FAILED_JOBS = reverse("api:failed-job-list")
RETRY_MATCHING = reverse("api:failed-job-retry-matching")
DELIVERIES = reverse("api:delivery-list")


@pytest.fixture(autouse=True)
def fresh_rate_counts():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def owner():
    return get_user_model().objects.create_user("owner", is_staff=True)


def token_client(owner, scope, name=None):
    """A client calling with a new token of ``scope``; the token is ``client.token``."""
    token, key = ApiToken.objects.issue(name=name or f"{scope}-bot", scope=scope, created_by=owner)
    client = Client(headers={"Authorization": f"Bearer {key}"})
    client.token = token
    return client


@pytest.fixture
def reader(owner):
    return token_client(owner, "read")


@pytest.fixture
def actor(owner):
    return token_client(owner, "act")


def job_url(job, action=""):
    name = f"api:failed-job-{action}" if action else "api:failed-job-detail"
    return reverse(name, args=[job.pk])


def ids(response):
    return [row["id"] for row in response.json()["results"]]


def post(client, url, data=None):
    return client.post(url, json.dumps(data or {}), content_type="application/json")


# Authentication


def test_no_key_is_401_with_a_code_and_the_scheme(client):
    response = client.get(FAILED_JOBS)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


def test_unknown_key_is_401(client):
    response = client.get(FAILED_JOBS, headers={"Authorization": "Bearer ntf_not-a-key"})
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


def test_revoked_token_is_refused(reader):
    assert reader.get(FAILED_JOBS).status_code == 200
    reader.token.revoke()
    response = reader.get(FAILED_JOBS)
    assert response.status_code == 401
    assert response.json()["code"] == "revoked_token"


def test_only_the_hash_of_a_key_is_stored_and_last_use_is_noted(owner):
    token, key = ApiToken.objects.issue(name="backoffice", scope="read", created_by=owner)
    assert token.key_hash == hash_key(key) and key not in token.key_hash
    assert token.last_used_at is None
    Client(headers={"Authorization": f"Bearer {key}"}).get(FAILED_JOBS)
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_create_api_token_prints_a_key_that_works(owner):
    out = StringIO()
    call_command("create_api_token", "oncall", "--scope", "act", "--user", "owner", stdout=out)
    key = out.getvalue().strip()
    assert ApiToken.objects.get(name="oncall").key_hash == hash_key(key)
    assert Client(headers={"Authorization": f"Bearer {key}"}).get(FAILED_JOBS).status_code == 200
    with pytest.raises(CommandError, match="already"):
        call_command("create_api_token", "oncall", "--user", "owner")


def test_a_staff_session_works_with_the_admins_permissions():
    job = failed_job()
    viewer = staff_client("view_failedjob", username="viewer")
    assert ids(viewer.get(FAILED_JOBS)) == [job.pk]
    assert viewer.post(job_url(job, "retry")).status_code == 403
    assert viewer.delete(job_url(job)).status_code == 403
    deleter = staff_client("view_failedjob", "delete_failedjob", username="deleter")
    assert deleter.delete(job_url(job)).status_code == 204


def test_a_session_post_needs_the_csrf_token():
    job = failed_job()
    user = get_user_model().objects.create_superuser("root", password="x")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(job_url(job, "retry"))
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert FailedJob.objects.get().status == FailedJob.Status.FAILED


def test_a_session_of_a_non_staff_user_is_not_enough():
    failed_job()
    client = Client()
    client.force_login(get_user_model().objects.create_user("customer"))
    assert client.get(FAILED_JOBS).status_code == 401


def test_requests_are_limited_per_token(settings, owner):
    settings.API_RATE_LIMIT = "3/minute"
    first, second = token_client(owner, "read", "first"), token_client(owner, "read", "second")
    assert [first.get(FAILED_JOBS).status_code for _ in range(3)] == [200, 200, 200]
    response = first.get(FAILED_JOBS)
    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
    assert "Retry-After" in response.headers
    assert second.get(FAILED_JOBS).status_code == 200


# Failed jobs: lists and filters


def test_list_filters_as_the_admin_does(reader):
    now = timezone.now()
    sms = failed_job(failed_at=now - timedelta(hours=1))
    email = failed_job("email", EMAIL, failed_at=now - timedelta(hours=2))
    old = failed_job(
        failed_at=now - timedelta(days=3), exception_class="builtins.RuntimeError", error_code="30003"
    )
    retried = failed_job(status=FailedJob.Status.RETRIED, failed_at=now - timedelta(hours=3))

    def listed(**params):
        response = reader.get(FAILED_JOBS, params)
        assert response.status_code == 200, response.content
        return ids(response)

    assert listed() == [sms.pk, email.pk, retried.pk, old.pk]
    assert listed(queue="email") == [email.pk]
    assert listed(actor=sms.actor_name) == [sms.pk, retried.pk, old.pk]
    assert listed(status="retried") == [retried.pk]
    assert listed(exception_class="builtins.RuntimeError") == [old.pk]
    assert listed(error_code="30003") == [old.pk]
    assert listed(error_signature=sms.error_signature) == [sms.pk, retried.pk]
    assert listed(recipient=EMAIL) == [email.pk]
    assert listed(since=(now - timedelta(days=1)).isoformat()) == [sms.pk, email.pk, retried.pk]
    assert listed(until=(now - timedelta(hours=2)).isoformat()) == [retried.pk, old.pk]
    assert listed(message_id=email.message_id) == [email.pk]


def test_bad_parameters_are_422_naming_them(reader):
    response = reader.get(FAILED_JOBS, {"status": "lost", "since": "yesterday"})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid"
    assert set(body["errors"]) == {"status", "since"}
    assert reader.get(FAILED_JOBS, {"limit": "0"}).status_code == 422
    assert reader.get(FAILED_JOBS, {"cursor": "garbage"}).status_code == 422


def test_pages_walk_every_row_exactly_once_while_rows_are_added(reader):
    moment = timezone.now() - timedelta(hours=1)
    # Ties on failed_at included: the pk breaks them.
    existing = {failed_job(failed_at=moment - timedelta(minutes=i // 3)).pk for i in range(23)}
    seen = []
    url = f"{FAILED_JOBS}?limit=4"
    first = reader.get(url).json()
    assert first["count"] == 23 and first["count_is_exact"]
    while url:
        page = reader.get(url).json()
        seen += [row["id"] for row in page["results"]]
        failed_job()  # a new failure arrives between two pages
        url = page["next"]
    assert len(seen) == len(set(seen)) == 23
    assert set(seen) == existing


def test_past_the_threshold_the_count_is_the_planners_estimate(reader, monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "threshold", 5)
    for _ in range(8):
        failed_job()
    body = reader.get(FAILED_JOBS).json()
    assert body["count_is_exact"] is False
    assert body["count"] >= 6


# Failed jobs: masking


def job_with_secrets():
    message = job_message(
        "email", EMAIL, context={"link": "https://app.example.com/verify?token=s3cret", "phone": PHONE}
    )
    return failed_job(
        "email",
        EMAIL,
        message=message,
        exception_message=f"SMTP refused {EMAIL}: see https://mail.example.com/bounce/abc for more",
    )


def test_read_scope_gets_recipients_arguments_and_errors_masked(reader):
    job = job_with_secrets()
    [row] = reader.get(FAILED_JOBS).json()["results"]
    assert row["recipient"] == MASKED_EMAIL
    assert EMAIL not in row["exception_message"]
    detail = reader.get(job_url(job)).json()
    assert detail["recipient"] == MASKED_EMAIL
    assert detail["kwargs"]["recipient"] == MASKED_EMAIL
    assert detail["kwargs"]["context"] == {"link": "https://app.example.com/…", "phone": MASKED_PHONE}
    assert "s3cret" not in json.dumps(detail) and EMAIL not in json.dumps(detail)
    assert (
        detail["exception_message"] == f"SMTP refused {MASKED_EMAIL}: see https://mail.example.com/… for more"
    )


def test_act_scope_sees_arguments_in_full(actor):
    job = job_with_secrets()
    detail = actor.get(job_url(job)).json()
    assert detail["kwargs"]["recipient"] == EMAIL
    assert detail["kwargs"]["context"]["link"] == "https://app.example.com/verify?token=s3cret"
    assert detail["message_size"] == len(job.message_data)


def test_unknown_job_is_404_with_a_code(reader):
    response = reader.get(reverse("api:failed-job-detail", args=[999999]))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


# Failed jobs: acting


def test_read_scope_cannot_retry_resolve_or_delete(reader):
    job = failed_job()
    for response in (
        reader.post(job_url(job, "retry")),
        reader.post(job_url(job, "resolve")),
        reader.delete(job_url(job)),
        post(reader, RETRY_MATCHING, {"all": True}),
    ):
        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"
    assert FailedJob.objects.get().status == FailedJob.Status.FAILED
    assert not LogEntry.objects.exists()


def history():
    return [
        (entry.action_flag, entry.object_id, entry.get_change_message(), entry.user.username)
        for entry in LogEntry.objects.order_by("pk")
    ]


def test_retry_sends_the_message_again_and_is_in_the_admins_history(actor, stub_broker):
    delivery = new_delivery(status=Delivery.Status.FAILED)
    job = failed_job(message=job_message(delivery_id=delivery.pk))
    response = actor.post(job_url(job, "retry"))
    assert response.status_code == 200
    assert response.json() == {"retried": 1, "skipped": 0, "dry_run": False}
    job.refresh_from_db()
    assert job.status == FailedJob.Status.RETRIED
    [message] = stub_broker.queues[job.queue_name].queue
    assert job.retried_as in message.decode()
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.QUEUED
    [(flag, object_id, change, user)] = history()
    assert (flag, object_id, user) == (CHANGE, str(job.pk), "owner")
    assert "retried 1" in change and "“act-bot”" in change


def test_retrying_a_job_that_is_not_failed_is_a_conflict(actor, stub_broker):
    job = failed_job(status=FailedJob.Status.RESOLVED)
    response = actor.post(job_url(job, "retry"))
    assert response.status_code == 409
    assert response.json()["code"] == "not_failed"


def test_resolve_then_delete(actor):
    job = failed_job()
    response = actor.post(job_url(job, "resolve"))
    assert response.status_code == 200
    assert response.json()["status"] == "resolved"
    assert actor.post(job_url(job, "resolve")).status_code == 409
    assert actor.delete(job_url(job)).status_code == 204
    assert not FailedJob.objects.exists()
    assert [flag for flag, *_ in history()] == [CHANGE, DELETION]


def test_retry_matching_retries_the_failed_jobs_the_filters_select(actor, stub_broker):
    sms = [failed_job() for _ in range(3)]
    failed_job("email", EMAIL)
    failed_job(status=FailedJob.Status.RETRIED)
    assert post(actor, RETRY_MATCHING, {"queue": "sms", "dry_run": True}).json() == {
        "retried": 3,
        "skipped": 1,
        "dry_run": True,
    }
    assert FailedJob.objects.filter(status=FailedJob.Status.FAILED).count() == 4
    other_cause = failed_job("whatsapp", exception_class="builtins.RuntimeError", exception_message="boom")
    assert (
        post(actor, RETRY_MATCHING, {"error_signature": other_cause.error_signature}).json()["retried"] == 1
    )
    response = post(actor, RETRY_MATCHING, {"queue": "sms"})
    assert response.status_code == 200
    assert response.json() == {"retried": 3, "skipped": 1, "dry_run": False}
    assert {
        job.pk
        for job in FailedJob.objects.filter(status=FailedJob.Status.RETRIED, retry_count=1, queue_name="sms")
    } == {job.pk for job in sms}
    assert FailedJob.objects.get(queue_name="email").status == FailedJob.Status.FAILED
    [(_, object_id, change, _)] = history()[-1:]
    assert object_id is None
    assert change == "Retried 3 failed jobs (all matching queue=sms; through the API, by API token “act-bot”)"


def test_retry_matching_needs_a_filter_or_all(actor):
    response = post(actor, RETRY_MATCHING, {})
    assert response.status_code == 422
    assert "all" in response.json()["errors"]


def test_a_large_retry_is_a_bulk_operation_on_a_worker_with_its_progress(settings, actor, worker):
    settings.FAILED_JOBS_BULK_IN_REQUEST_MAX = 2
    # Their deliveries do not exist: the retried messages run and do nothing.
    jobs = [failed_job(message=job_message(delivery_id=10_000 + i)) for i in range(5)]
    failed_job("email", EMAIL)
    response = post(actor, RETRY_MATCHING, {"queue": "sms"})
    assert response.status_code == 202
    url = response.headers["Location"]
    assert response.json()["status"] == "pending"
    assert response.json()["total"] == 5

    def finished():
        body = actor.get(url).json()
        return body if body["status"] in ("done", "failed") else None

    body = wait_until(finished, timeout=60, message="the bulk operation to finish")
    assert body["status"] == "done", body
    assert (body["action"], body["done"], body["percent"]) == ("retry", 5, 100)
    assert {job.pk for job in FailedJob.objects.filter(status=FailedJob.Status.RETRIED)} == {
        job.pk for job in jobs
    }
    [(_, object_id, change, user)] = history()
    assert (object_id, user) == (None, "owner")
    assert change == "Retried 5 failed jobs (all matching queue=sms; through the API, by API token “act-bot”)"


# Deliveries


def test_deliveries_are_listed_and_looked_up(reader):
    sms = new_delivery(idempotency_key="order-42", provider_message_id="SM123")
    email = new_delivery(EMAIL, channel="email", status=Delivery.Status.SENT)

    def listed(**params):
        response = reader.get(DELIVERIES, params)
        assert response.status_code == 200, response.content
        return ids(response)

    assert listed() == [email.pk, sms.pk]
    assert listed(idempotency_key="order-42") == [sms.pk]
    assert listed(provider_message_id="SM123") == [sms.pk]
    assert listed(recipient=EMAIL) == [email.pk]
    assert listed(status="sent", channel="email") == [email.pk]
    assert listed(recipient="+33700000000") == []


def test_a_delivery_is_masked_for_read_and_whole_for_act(reader, actor):
    delivery = new_delivery(EMAIL, channel="email", context={"link": "https://app.example.com/i/s3cret"})
    url = reverse("api:delivery-detail", args=[delivery.pk])
    masked = reader.get(url).json()
    assert masked["recipient"] == MASKED_EMAIL
    assert masked["context"] == {"link": "https://app.example.com/…"}
    whole = actor.get(url).json()
    assert whole["recipient"] == EMAIL
    assert whole["context"] == {"link": "https://app.example.com/i/s3cret"}


def test_a_scheduled_delivery_is_cancelled(actor, reader):
    delivery = new_delivery(status=Delivery.Status.SCHEDULED, send_at=timezone.now() + timedelta(hours=1))
    url = reverse("api:delivery-cancel", args=[delivery.pk])
    assert reader.post(url).status_code == 403
    response = actor.post(url)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.CANCELLED
    [(flag, object_id, change, _)] = history()
    assert (flag, object_id) == (CHANGE, str(delivery.pk)) and "Cancelled" in change
    again = actor.post(url)
    assert again.status_code == 409
    assert again.json()["code"] == "not_cancellable"


# The schema, and the admin of tokens


def test_the_openapi_schema_validates(client):
    response = client.get(reverse("api:schema"), {"format": "json"})
    assert response.status_code == 200
    schema = json.loads(response.content)
    validate(schema)
    assert "/api/v1/failed-jobs/{id}/retry/" in schema["paths"]
    assert "/api/v1/deliveries/{id}/cancel/" in schema["paths"]
    assert schema["components"]["securitySchemes"]["apiToken"]["scheme"] == "bearer"


def test_the_admin_shows_a_new_key_once_and_revokes(admin_client):
    response = admin_client.post(
        reverse("admin:api_apitoken_add"), {"name": "chatbot", "scope": "read"}, follow=True
    )
    [message] = [str(m) for m in response.context["messages"] if "Copy it now" in str(m)]
    key = message.split(" is ", 1)[1].split(" ")[0]
    token = ApiToken.objects.get(name="chatbot")
    assert token.key_hash == hash_key(key)
    assert key not in admin_client.get(reverse("admin:api_apitoken_change", args=[token.pk])).content.decode()
    assert Client(headers={"Authorization": f"Bearer {key}"}).get(FAILED_JOBS).status_code == 200
    admin_client.post(
        reverse("admin:api_apitoken_changelist"),
        {"action": "revoke_selected", "_selected_action": [token.pk]},
    )
    assert Client(headers={"Authorization": f"Bearer {key}"}).get(FAILED_JOBS).status_code == 401

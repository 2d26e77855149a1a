"""Error signatures: failures that differ only in ids, addresses or numbers share one; causes do not."""

import importlib
import io

import pytest
from django.apps import apps
from dramatiq import Message

from failedjobs import services
from failedjobs.models import FailedJob
from failedjobs.signatures import error_code, error_signature, normalise
from notifications.exceptions import PermanentDeliveryError
from tests.factories import failed_job, job_message

REFUSED = "notifications.exceptions.PermanentDeliveryError"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("The 'To' number +33612345678 is not valid", "The 'To' number +14155550123 is not valid"),
        ("No mailbox ann@example.com", "No mailbox bob.smith+x@mail.example.org"),
        ("Delivery 12 failed after 3 attempts", "Delivery 98765 failed after 5 attempts"),
        (
            "Message 0f8fad5b-d9cb-469f-a165-70867728950e is gone",
            "Message 7c9e6679-7425-40de-944b-e07fc1f90ae7 is gone",
        ),
        (
            "Unknown message SM0123456789abcdef0123456789abcdef",
            "Unknown message SMfedcba9876543210fedcba9876543210",
        ),
        ("GET https://api.example.com/v1/u/12?token=abc failed", "GET http://other.example/x failed"),
        ("Call 06 12 34 56 78 back", "Call 01 98 76 54 32 back"),
        ("token a1b2c3d4e5 expired", "token zz99yy88xx77 expired"),
    ],
)
def test_messages_differing_only_in_ids_share_a_signature(first, second):
    assert error_signature(REFUSED, first) == error_signature(REFUSED, second)
    assert error_signature(REFUSED, first) != error_signature(REFUSED, "something else entirely")


def test_different_causes_have_different_signatures():
    signatures = {
        error_signature(REFUSED, "The 'To' number +33612345678 is not valid", "21211"),
        error_signature(REFUSED, "The 'To' number +33612345678 is not valid", "21614"),
        error_signature(REFUSED, "Recipient +33612345678 unsubscribed", "21211"),
        error_signature("smtplib.SMTPRecipientsRefused", "The 'To' number +33612345678 is not valid"),
    }
    assert len(signatures) == 4


def test_what_a_signature_reads_like():
    assert (
        normalise("User 12  (ann@example.com)\n refused +33612345678") == "User <n> (<email>) refused <phone>"
    )
    assert error_signature("app.Refused", "x" * 1000).startswith("app.Refused: xxx")
    assert len(error_signature("app.Refused", "x" * 1000)) == 255


def test_error_code_from_the_exception_or_its_text():
    error = PermanentDeliveryError("Twilio refused the message", provider="twilio", code=21211)
    assert error_code(error) == "21211"
    assert error_code(None, str(error)) == "21211"  # a message recovered from Redis has only the text
    assert error_code(ValueError("bad"), "bad") == ""
    assert error_code(SystemExit(True)) == ""


@pytest.mark.django_db
def test_record_failure_stores_the_signature_and_the_code(stub_broker):
    signatures = set()
    for number in ("+33612345678", "+33698765432"):
        message = job_message("sms", number)
        error = PermanentDeliveryError(
            f"Twilio refused the message: The 'To' number {number} is not valid",
            provider="twilio",
            code=21211,
        )
        job = services.record_failure(message, error)
        assert job.error_code == "21211"
        signatures.add(FailedJob.objects.get(pk=job.pk).error_signature)

    [signature] = signatures
    assert signature == (
        "notifications.exceptions.PermanentDeliveryError [21211]: Twilio refused the message: "
        "The 'To' number <phone> is not valid (twilio error <n>)"
    )
    assert services.filter_jobs(signature=signature).count() == 2
    assert services.filter_jobs(code="21211").count() == 2
    assert services.filter_jobs(signature=signature + "x").count() == 0


@pytest.mark.django_db
def test_a_dead_letter_recovered_from_its_text_gets_the_same_signature(stub_broker):
    worker_failure = job_message("sms", "+33612345678")
    error = PermanentDeliveryError("The 'To' number +33612345678 is not valid", provider="twilio", code=21211)
    services.record_failure(worker_failure, error)
    recovered = job_message("sms", "+33698765432")
    recovered = Message(**{**recovered.asdict(), "options": {"error": f"{REFUSED}: {error}"}})
    services.record_failure(recovered, None, source=FailedJob.Source.RECONCILED)

    assert FailedJob.objects.values("error_signature", "error_code").distinct().count() == 1


@pytest.mark.django_db
def test_the_migration_fills_signatures_of_older_rows():
    older = [
        failed_job("sms", number, error_signature="", error_code="")
        for number in ("+33612345678", "+33698765432")
    ]
    other = failed_job("sms", exception_class="builtins.ValueError", error_signature="", error_code="")
    fill = importlib.import_module("failedjobs.migrations.0003_fill_error_signatures").fill_signatures

    fill(apps, None)

    rows = {job.pk: job for job in FailedJob.objects.all()}
    assert rows[older[0].pk].error_signature == rows[older[1].pk].error_signature != ""
    assert rows[other.pk].error_signature.startswith("builtins.ValueError")
    assert rows[other.pk].error_signature != rows[older[0].pk].error_signature


@pytest.mark.django_db
def test_the_admin_lists_one_group_and_filters_by_code_and_class(admin_client):
    refused = failed_job("sms", "+33612345678")
    failed_job("sms", "+33698765432")
    other = failed_job("sms", exception_class="builtins.ValueError", error_code="")
    url = "/admin/failedjobs/failedjob/"

    by_group = admin_client.get(url, {"signature": refused.error_signature})
    by_code = admin_client.get(url, {"error_code": "21211"})
    by_class = admin_client.get(url, {"exception_class": "builtins.ValueError"})

    assert {job.pk for job in by_group.context["cl"].result_list} == {refused.pk, refused.pk + 1}
    assert len(by_code.context["cl"].result_list) == 2
    assert [job.pk for job in by_class.context["cl"].result_list] == [other.pk]


@pytest.mark.django_db
def test_retry_failed_takes_a_signature_and_a_code(stub_broker):
    from django.core.management import call_command

    refused = failed_job("sms", "+33612345678")
    failed_job("sms", exception_class="builtins.ValueError", error_code="")

    call_command("retry_failed", "--signature", refused.error_signature, stdout=io.StringIO())

    assert list(FailedJob.objects.filter(status=FailedJob.Status.RETRIED)) == [refused]
    call_command("retry_failed", "--code", "21211", stdout=io.StringIO())
    assert FailedJob.objects.filter(status=FailedJob.Status.FAILED).count() == 1

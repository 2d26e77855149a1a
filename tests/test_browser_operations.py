"""The operators' pages in headless Chromium: failed jobs by cause, a group's confirmation, the status."""

import pytest
from django.contrib.admin.models import LogEntry
from selenium.webdriver.common.by import By

from failedjobs.models import BulkOperation, FailedJob
from tests.factories import failed_job
from tests.helpers import wait_until
from tests.test_browser_admin import sign_in

pytestmark = pytest.mark.django_db(transaction=True)


def texts(browser, selector):
    return [element.text for element in browser.find_elements(By.CSS_SELECTOR, selector)]


def two_groups():
    invalid = [failed_job("sms", f"+3361234567{n}") for n in range(3)]
    other = failed_job("sms", exception_class="builtins.ValueError", error_code="")
    return invalid, other


def test_an_operator_resolves_one_cause_from_the_groups_page(browser, live_server):
    invalid, other = two_groups()
    sign_in(browser, live_server)
    browser.get(f"{live_server.url}/admin/failedjobs/failedjob/")
    browser.find_element(
        By.CSS_SELECTOR, ".object-tools a[href^='/admin/failedjobs/failedjob/groups/']"
    ).click()

    assert texts(browser, "#groups td.count") == ["3", "1"]
    first = browser.find_element(By.CSS_SELECTOR, "#groups tr.group")
    assert "<phone>" in first.find_element(By.CSS_SELECTOR, "td.signature").text
    assert "+3361234567" not in browser.page_source
    assert first.find_element(By.CSS_SELECTOR, ".sparkline").text.endswith("█")
    first.find_element(By.CSS_SELECTOR, "a.resolve-group").click()

    assert "3 failed jobs will be marked resolved" in browser.find_element(By.ID, "matching-count").text
    browser.find_element(By.CSS_SELECTOR, "input[type=submit][value='Yes, resolve 3']").click()

    assert "resolved 3, skipped 0" in browser.find_element(By.CSS_SELECTOR, ".messagelist").text.lower()
    assert set(
        FailedJob.objects.filter(pk__in=[job.pk for job in invalid]).values_list("status", flat=True)
    ) == {"resolved"}
    assert FailedJob.objects.get(pk=other.pk).status == "failed"
    browser.get(f"{live_server.url}/admin/failedjobs/failedjob/groups/")
    assert texts(browser, "#groups td.count") == ["1"]
    assert "operator: Resolved 3 failed jobs" in browser.find_element(By.ID, "history").text


def test_a_large_delete_shows_its_progress(browser, live_server, settings, stub_broker, stub_worker):
    settings.FAILED_JOBS_BULK_IN_REQUEST_MAX = 2
    two_groups()
    sign_in(browser, live_server)
    browser.get(f"{live_server.url}/admin/failedjobs/failedjob/?status__exact=failed")
    browser.find_element(By.CSS_SELECTOR, ".object-tools a[href*='/delete-matching/']").click()

    assert "run on a worker" in browser.page_source
    browser.find_element(By.CSS_SELECTOR, "input[type=submit][value='Yes, delete 4']").click()

    wait_until(lambda: BulkOperation.objects.filter(status="done").exists(), message="the bulk delete")
    browser.refresh()
    assert "4 of 4 (100%)" in browser.find_element(By.CSS_SELECTOR, ".field-progress").text
    assert FailedJob.objects.count() == 0
    assert LogEntry.objects.get().get_change_message() == "Deleted 4 failed jobs (status__exact=failed)"


def test_an_operator_reads_the_pipeline_status(browser, live_server, redis_broker):
    from tests.factories import job_message

    redis_broker.enqueue(job_message("sms"))
    failed_job("sms")
    sign_in(browser, live_server)
    browser.get(f"{live_server.url}/admin/notifications/delivery/")
    browser.find_element(
        By.CSS_SELECTOR, ".object-tools a[href='/admin/notifications/delivery/status/']"
    ).click()

    sms = browser.find_element(By.CSS_SELECTOR, "#queues tr.queue-sms").text.split()
    assert sms[:4] == ["sms", "1", "0", "0"]
    assert "Scheduler's last tick: never seen" in browser.find_element(By.ID, "scheduler").text
    assert "Failed jobs waiting: 1" in browser.page_source
    browser.find_element(By.LINK_TEXT, "Act on them by cause").click()
    assert texts(browser, "#groups td.count") == ["1"]

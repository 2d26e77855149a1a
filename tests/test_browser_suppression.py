"""The suppression list and a suppressed delivery, as an operator sees them in headless Chromium."""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from notifications.models import Suppression
from notifications.services import NotificationsService
from tests.helpers import wait_until
from tests.test_browser_admin import sign_in

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_operator_suppresses_a_number_and_sees_why_a_delivery_was_not_sent(browser, live_server, settings):
    settings.QUEUE_ENABLED = False
    sign_in(browser, live_server)

    browser.get(f"{live_server.url}/admin/notifications/suppression/add/")
    Select(browser.find_element(By.NAME, "channel")).select_by_value("sms")
    browser.find_element(By.NAME, "recipient").send_keys("+33 6 12 34 56 78")
    browser.find_element(By.NAME, "detail").send_keys("Asked by phone")
    browser.find_element(By.NAME, "_save").click()

    rows = wait_until(
        lambda: browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr"), message="the list"
    )
    assert len(rows) == 1 and "Added by an operator" in rows[0].text
    assert Suppression.objects.get().recipient == "+33612345678"

    delivery = NotificationsService().send_sms("+33612345678", text="hi")
    browser.get(f"{live_server.url}/admin/notifications/delivery/{delivery.pk}/change/")
    page = browser.find_element(By.ID, "content").text
    assert "Suppressed" in page and "Added by an operator" in page

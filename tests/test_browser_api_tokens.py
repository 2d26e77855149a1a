"""API tokens as an operator makes and revokes them in the admin, in headless Chromium."""

import json
import urllib.error
import urllib.request

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from api.models import ApiToken, hash_key
from tests.factories import failed_job
from tests.helpers import wait_until
from tests.test_browser_admin import sign_in


def api_status(live_server, key):
    request = urllib.request.Request(
        f"{live_server.url}/api/v1/failed-jobs/", headers={"Authorization": f"Bearer {key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def page_messages(browser):
    return " ".join(element.text for element in browser.find_elements(By.CSS_SELECTOR, ".messagelist li"))


def key_message(browser):
    texts = [element.text for element in browser.find_elements(By.CSS_SELECTOR, ".messagelist li")]
    return next((text for text in texts if "Copy it now" in text), None)


def test_a_token_is_shown_once_works_and_is_revoked(browser, live_server, transactional_db):
    job = failed_job("sms")
    sign_in(browser, live_server)
    wait_until(lambda: "/login/" not in browser.current_url, message="the sign-in")

    browser.get(f"{live_server.url}/admin/api/apitoken/add/")
    browser.find_element(By.NAME, "name").send_keys("on-call script")
    Select(browser.find_element(By.NAME, "scope")).select_by_value("read")
    browser.find_element(By.NAME, "_save").click()

    message = wait_until(lambda: key_message(browser), message="the new key on the page")
    key = message.split(" is ", 1)[1].split(" ")[0]
    assert ApiToken.objects.get(name="on-call script").key_hash == hash_key(key)
    status, body = api_status(live_server, key)
    assert status == 200
    assert [row["id"] for row in body["results"]] == [job.pk]
    assert body["results"][0]["recipient"] == "+33******78"

    # The operator's own session works in the browser too.
    browser.get(f"{live_server.url}/api/v1/failed-jobs/{job.pk}/")
    assert json.loads(browser.find_element(By.TAG_NAME, "body").text)["id"] == job.pk

    browser.get(f"{live_server.url}/admin/api/apitoken/")
    browser.find_element(By.CSS_SELECTOR, "#result_list input.action-select").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("revoke_selected")
    browser.find_element(By.NAME, "index").click()
    wait_until(
        lambda: "1 api token(s) revoked" in page_messages(browser).lower(), message="the revocation message"
    )
    status, body = api_status(live_server, key)
    assert (status, body["code"]) == (401, "revoked_token")

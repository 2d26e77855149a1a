"""The admin, as an operator sees it in headless Chromium: sign in, then the failed jobs list."""

from django.contrib.auth import get_user_model
from selenium.webdriver.common.by import By

from tests.factories import failed_job
from tests.helpers import wait_until


def sign_in(browser, live_server, username="operator", password="a-long-password"):
    get_user_model().objects.create_superuser(username, f"{username}@example.com", password)
    browser.get(f"{live_server.url}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # A page asked for before the sign-in's answer arrives would get the login form.
    wait_until(lambda: browser.find_elements(By.ID, "user-tools"), message="the signed-in admin")


def test_an_operator_signs_in_and_sees_the_failed_jobs(browser, live_server):
    job = failed_job("sms")
    sign_in(browser, live_server)

    browser.get(f"{live_server.url}/admin/failedjobs/failedjob/")

    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 1
    assert job.actor_name in rows[0].text

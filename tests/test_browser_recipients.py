"""The recipients' pages as a person uses them, in headless Chromium: sign in, change notification
settings, read and delete notifications in the inbox."""

from django.contrib.auth import get_user_model
from selenium.webdriver.common.by import By
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import Select, WebDriverWait

from notifications import preferences
from notifications.models import InAppNotification, NotificationPreference, QuietHours


def submit(browser, button):
    """Click a button that posts a form, and wait for the next page."""
    page = browser.find_element(By.TAG_NAME, "html")
    button.click()
    WebDriverWait(browser, 10).until(staleness_of(page))


def sign_in(browser, live_server, username="ada", password="a-long-password"):
    user = get_user_model().objects.create_user(username, f"{username}@example.com", password)
    browser.get(f"{live_server.url}/accounts/login/?next=/notifications/preferences/")
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(password)
    submit(browser, browser.find_element(By.ID, "sign-in"))
    return user


def test_a_user_turns_off_offers_by_email_and_sets_quiet_hours(browser, live_server):
    user = sign_in(browser, live_server)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Notification settings"
    security = browser.find_element(By.ID, "security-sms")
    assert security.is_selected() and not security.is_enabled()

    browser.find_element(By.ID, "marketing-email").click()
    browser.find_element(By.ID, "quiet-enabled").click()
    Select(browser.find_element(By.ID, "quiet-timezone")).select_by_visible_text("Europe/Paris")
    submit(browser, browser.find_element(By.ID, "save"))

    assert "Your settings are saved." in browser.find_element(By.ID, "saved").text
    assert not browser.find_element(By.ID, "marketing-email").is_selected()
    assert browser.find_element(By.ID, "marketing-sms").is_selected()
    assert list(
        NotificationPreference.objects.filter(user=user, enabled=False).values_list("category", "channel")
    ) == [("marketing", "email")]
    hours = QuietHours.objects.get(user=user)
    assert (f"{hours.starts:%H:%M}", f"{hours.ends:%H:%M}", hours.timezone) == (
        "22:00",
        "07:00",
        "Europe/Paris",
    )
    assert preferences.is_enabled(user.pk, "marketing", "sms")


def test_a_user_reads_and_deletes_notifications_in_the_inbox(browser, live_server, django_user_model):
    user = sign_in(browser, live_server)
    other = django_user_model.objects.create(username="bob")
    InAppNotification.objects.create(recipient=other, title="Not for Ada")
    older = InAppNotification.objects.create(recipient=user, title="Report ready", link="/reports/7")
    InAppNotification.objects.create(recipient=user, title="Appointment moved", body="Now at 10:00")

    browser.get(f"{live_server.url}/notifications/")

    titles = [element.text for element in browser.find_elements(By.CSS_SELECTOR, "li.notification .title")]
    assert titles == ["Appointment moved", "Report ready"]
    assert browser.find_element(By.ID, "unread-count").text == "2"

    submit(browser, browser.find_element(By.CSS_SELECTOR, f"li[data-id='{older.pk}'] .mark-read"))
    assert browser.find_element(By.ID, "unread-count").text == "1"
    assert "unread" not in browser.find_element(By.CSS_SELECTOR, f"li[data-id='{older.pk}']").get_attribute(
        "class"
    )

    submit(browser, browser.find_element(By.CSS_SELECTOR, f"li[data-id='{older.pk}'] .delete"))
    titles = [element.text for element in browser.find_elements(By.CSS_SELECTOR, "li.notification .title")]
    assert titles == ["Appointment moved"]

    submit(browser, browser.find_element(By.ID, "read-all"))
    assert browser.find_element(By.ID, "unread-count").text == "0"
    assert InAppNotification.objects.get(title="Not for Ada").read_at is None

"""The apps in a host project: build the wheel, install it apart, and send from a minimal Django project."""

from pathlib import Path

from notifications.rendering import find_template

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "notifications" / "templates" / "notifications"


def test_a_language_without_templates_falls_back_to_english_whatever_the_language_code(settings):
    # Django's default LANGUAGE_CODE, "en-us", has no templates of its own; plain SMS exist in English only.
    settings.LANGUAGE_CODE = "en-us"
    template = find_template("notifications/sms/plain/{language}.txt", "fr")
    assert template.origin.name == str(TEMPLATES / "sms" / "plain" / "en.txt")

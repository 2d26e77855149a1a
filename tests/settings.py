"""Settings for the test suite: the project's settings with fast retries and test credentials."""

import os

# project.settings refuses to start without a key unless DEBUG is on; worker processes started by
# the tests inherit it.
os.environ.setdefault("SECRET_KEY", "tests-only-secret-key")

from project.settings import *  # noqa: F403
from project.settings import DRAMATIQ_BROKER, env

QUEUE_ENABLED = True

NOTIFICATIONS_MAX_RETRIES = 5
NOTIFICATIONS_MIN_BACKOFF_MS = 10
NOTIFICATIONS_MAX_BACKOFF_MS = 40
NOTIFICATIONS_TIME_LIMIT_MS = 3_000
# Off unless a test turns it on (test_breaker.py): the retry tests count on every failure going through.
NOTIFICATIONS_BREAKER_THRESHOLD = 0

NOTIFICATIONS_SITE_URL = "http://testserver"

EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
DEFAULT_FROM_EMAIL = "notifications@example.com"

TWILIO_ACCOUNT_SID = "AC" + "0" * 32
TWILIO_AUTH_TOKEN = "test-auth-token"
TWILIO_SMS_FROM = "+15005550006"
TWILIO_WHATSAPP_FROM = "+14155238886"
TWILIO_API_BASE_URL = "http://127.0.0.1:9"  # the fake_twilio fixture points this at its server
TWILIO_TIMEOUT = 5.0

DRAMATIQ_BROKER["OPTIONS"]["heartbeat_timeout"] = 2_000
DRAMATIQ_BROKER["OPTIONS"]["maintenance_chance"] = 1_000_000

# TEST_BROKER=stub (scripts/test --unit): the global broker is Dramatiq's in-memory one, with the same
# middleware, so that the tests not marked redis run with no Redis at all.
if env("TEST_BROKER", default="redis") == "stub":
    DRAMATIQ_BROKER["BROKER"] = "dramatiq.brokers.stub.StubBroker"
    DRAMATIQ_BROKER["OPTIONS"] = {}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Business-initiated WhatsApp messages are Twilio Content templates (channels/whatsapp.py).
NOTIFICATIONS_WHATSAPP_TEMPLATES = {
    template: {
        "content_sids": {"en": f"HX{index}" + "e" * 31, "fr": f"HX{index}" + "f" * 31},
        "variables": ["with_name", "starts_at", "location"],
    }
    for index, template in enumerate(
        ["appointment_confirmation", "appointment_reminder_day_before", "appointment_reminder_hour_before"]
    )
}

# The manifest storage needs collectstatic's manifest, which the tests do not build (except
# tests/test_deployment.py, which runs collectstatic and gunicorn with the project's own settings).
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# WhiteNoise looks for files per request rather than warning at start that STATIC_ROOT is missing.
WHITENOISE_AUTOREFRESH = True

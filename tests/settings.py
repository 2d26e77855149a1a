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

from tests.settings import *  # noqa: F403

NOTIFICATIONS_CHANNELS = {
    "email": "notifications.channels.email.EmailChannel",
    "pigeon": "tests.extra_channel.PigeonChannel",
}
QUEUE_ENABLED = False
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

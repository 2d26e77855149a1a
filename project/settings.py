"""Django settings. This is the only module that reads the environment (see .env.example)."""

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)
# The development key is only for DEBUG=true (scripts/run); anything else must set its own.
SECRET_KEY = env("SECRET_KEY", default="insecure-development-key-change-me" if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set. Set it in the environment (a long random string, e.g. from "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'), or DEBUG=true for development."
    )
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# HTTPS, for `manage.py check --deploy` (off by default, so that plain-HTTP development works).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Probes call these over plain HTTP, and take a redirect for a success.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
# Behind a proxy that terminates TLS: SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO,https
if "SECURE_PROXY_SSL_HEADER" in env:
    SECURE_PROXY_SSL_HEADER = tuple(env.list("SECURE_PROXY_SSL_HEADER"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Before django_dramatiq, whose rundramatiq command notifications extends.
    "notifications",
    "django_dramatiq",
    "failedjobs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# Worker threads keep their own connection between messages. A connection that raised an error is
# replaced after the message; health checks would add a round trip to every message.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=False)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Bounds on a database that does not answer: a new connection gives up after the connect
    # timeout, a statement (a lock wait included) after the statement timeout, and a connection whose
    # packets go unacknowledged (the network is gone) after the TCP user timeout.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        connect_timeout=env.int("DATABASE_CONNECT_TIMEOUT", default=5),
        options=f"-c statement_timeout={env.int('DATABASE_STATEMENT_TIMEOUT_MS', default=30_000)}",
        keepalives=1,
        keepalives_idle=30,
        keepalives_interval=10,
        keepalives_count=3,
        tcp_user_timeout=env.int("DATABASE_TCP_USER_TIMEOUT_MS", default=30_000),
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("fr", "Français")]
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# Email: EMAIL_URL (smtp://user:pass@host:port, smtp+tls://..., consolemail://) or the usual EMAIL_* settings.
if "EMAIL_URL" in env:
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
    EMAIL_HOST = env("EMAIL_HOST", default="localhost")
    EMAIL_PORT = env.int("EMAIL_PORT", default=25)
    EMAIL_HOST_USER = env("EMAIL_HOST_USER", default="")
    EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", default="")
    EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
    EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="notifications@localhost")

# Twilio (SMS and WhatsApp). TWILIO_API_BASE_URL exists for proxies and local fakes.
TWILIO_ACCOUNT_SID = env("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env("TWILIO_AUTH_TOKEN", default="")
TWILIO_SMS_FROM = env("TWILIO_SMS_FROM", default="")
TWILIO_WHATSAPP_FROM = env("TWILIO_WHATSAPP_FROM", default="")
TWILIO_API_BASE_URL = env("TWILIO_API_BASE_URL", default="https://api.twilio.com")
TWILIO_TIMEOUT = env.float("TWILIO_TIMEOUT", default=15.0)
TWILIO_LOOKUP_DELAY_MS = env.int("TWILIO_LOOKUP_DELAY_MS", default=30_000)


def _redis_url():
    if "REDIS_URL" in env:
        return env("REDIS_URL")
    scheme = "rediss" if env.bool("REDIS_TLS", default=False) else "redis"
    host = env("REDIS_HOST", default="127.0.0.1")
    port = env.int("REDIS_PORT", default=6379)
    return f"{scheme}://{host}:{port}/0"


REDIS_URL = _redis_url()

# Off by default so that a fresh checkout runs without Redis; production sets QUEUE_ENABLED=true.
QUEUE_ENABLED = env.bool("QUEUE_ENABLED", default=False)

NOTIFICATIONS_MAX_RETRIES = env.int("NOTIFICATIONS_MAX_RETRIES", default=5)
NOTIFICATIONS_MIN_BACKOFF_MS = env.int("NOTIFICATIONS_MIN_BACKOFF_MS", default=30_000)
NOTIFICATIONS_MAX_BACKOFF_MS = env.int("NOTIFICATIONS_MAX_BACKOFF_MS", default=3_600_000)
NOTIFICATIONS_TIME_LIMIT_MS = env.int("NOTIFICATIONS_TIME_LIMIT_MS", default=60_000)
NOTIFICATIONS_MAX_PAYLOAD_BYTES = env.int("NOTIFICATIONS_MAX_PAYLOAD_BYTES", default=64 * 1024)
NOTIFICATIONS_REDRIVE_AFTER_S = env.int("NOTIFICATIONS_REDRIVE_AFTER_S", default=600)
NOTIFICATIONS_SYNC_TIMEOUT_S = env.float("NOTIFICATIONS_SYNC_TIMEOUT_S", default=5.0)

# Recipients' pages: links in emails (unsubscribe) start with the site's address.
NOTIFICATIONS_SITE_URL = env("NOTIFICATIONS_SITE_URL", default="http://127.0.0.1:8000" if DEBUG else "")
NOTIFICATIONS_STREAM_ENABLED = env.bool("NOTIFICATIONS_STREAM_ENABLED", default=True)
NOTIFICATIONS_STREAM_HEARTBEAT_S = env.float("NOTIFICATIONS_STREAM_HEARTBEAT_S", default=15.0)
LOGIN_REDIRECT_URL = "/notifications/"

FAILED_JOBS_RETENTION_DAYS = env.int("FAILED_JOBS_RETENTION_DAYS", default=90)
FAILED_JOBS_DONE_RETENTION_DAYS = env.int("FAILED_JOBS_DONE_RETENTION_DAYS", default=30)
NOTIFICATIONS_DELIVERY_RETENTION_DAYS = env.int("NOTIFICATIONS_DELIVERY_RETENTION_DAYS", default=180)
NOTIFICATIONS_READ_INAPP_RETENTION_DAYS = env.int("NOTIFICATIONS_READ_INAPP_RETENTION_DAYS", default=90)

DRAMATIQ_BROKER = {
    "BROKER": "notifications.broker.RedisBroker",
    "OPTIONS": {
        "url": REDIS_URL,
        "socket_connect_timeout": env.float("REDIS_CONNECT_TIMEOUT", default=2.0),
        "socket_timeout": env.float("REDIS_SOCKET_TIMEOUT", default=5.0),
        "heartbeat_timeout": env.int("DRAMATIQ_HEARTBEAT_TIMEOUT_MS", default=60_000),
        "maintenance_chance": env.int("DRAMATIQ_MAINTENANCE_CHANCE", default=1000),
        # Wake-up and grouped-ack speed-ups; without them (or with a Dramatiq they do not recognise,
        # with a warning) it is Dramatiq's own RedisBroker.
        "speedups": env.bool("REDIS_BROKER_SPEEDUPS", default=True),
    },
    "MIDDLEWARE": [
        "dramatiq.middleware.AgeLimit",
        "dramatiq.middleware.TimeLimit",
        "dramatiq.middleware.Callbacks",
        "dramatiq.middleware.Retries",
        "periodiq.PeriodiqMiddleware",
        "failedjobs.middleware.FailedJobMiddleware",
        "django_dramatiq.middleware.DbConnectionsMiddleware",
    ],
}
DRAMATIQ_AUTODISCOVER_MODULES = ["tasks"]

# Workers export Prometheus metrics on dramatiq_prom_host:dramatiq_prom_port, variables Dramatiq
# reads itself; its own default host is 0.0.0.0, so loopback is made the default here.
# The web process serves /metrics.
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=False)
METRICS_TOKEN = env("METRICS_TOKEN", default="")
if METRICS_ENABLED:
    os.environ.setdefault("dramatiq_prom_host", "127.0.0.1")
    DRAMATIQ_BROKER["MIDDLEWARE"].insert(0, "dramatiq.middleware.prometheus.Prometheus")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        # The Twilio SDK logs every request and its headers at INFO.
        "twilio.http_client": {"level": "WARNING"},
        # "Retries exceeded for message ..." comes with failedjobs' own warning, which names the
        # actor and the failed job to look at.
        "dramatiq.middleware.retries.Retries": {"level": "ERROR"},
    },
}

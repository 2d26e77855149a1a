"""Django settings. This is the only module that reads the environment (see .env.example)."""

import os
from email.utils import parseaddr
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# Only when there is one: django-environ logs ".env not found" otherwise, in every process.
if (BASE_DIR / ".env").is_file():
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
if env("SECURE_PROXY_SSL_HEADER", default=""):  # empty (as compose.yaml passes it when unset) is unset
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
    "anymail",
    "failedjobs",
    "rest_framework",
    "drf_spectacular",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves STATIC_ROOT (collectstatic) from the WSGI process, so the admin has its CSS with DEBUG off.
    "whitenoise.middleware.WhiteNoiseMiddleware",
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
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed names, compressed copies, and far-future cache headers from WhiteNoise.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

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
# Who gets the operators' alerts by email: ADMINS="Ann Smith <ann@example.com>,ops@example.com".
ADMINS = [parseaddr(entry) for entry in env.list("ADMINS", default=[])]
SERVER_EMAIL = env("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)

# Twilio (SMS and WhatsApp). TWILIO_API_BASE_URL exists for proxies and local fakes.
TWILIO_ACCOUNT_SID = env("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env("TWILIO_AUTH_TOKEN", default="")
TWILIO_SMS_FROM = env("TWILIO_SMS_FROM", default="")
TWILIO_WHATSAPP_FROM = env("TWILIO_WHATSAPP_FROM", default="")
TWILIO_API_BASE_URL = env("TWILIO_API_BASE_URL", default="https://api.twilio.com")
TWILIO_TIMEOUT = env.float("TWILIO_TIMEOUT", default=15.0)
TWILIO_LOOKUP_DELAY_MS = env.int("TWILIO_LOOKUP_DELAY_MS", default=30_000)
# Send through a Messaging Service (its sender pool) instead of TWILIO_SMS_FROM / TWILIO_WHATSAPP_FROM.
TWILIO_MESSAGING_SERVICE_SID = env("TWILIO_MESSAGING_SERVICE_SID", default="")
# Where SMS and WhatsApp go: Twilio, or notifications.twilio_backends.ConsoleBackend / LocmemBackend.
NOTIFICATIONS_TWILIO_BACKEND = env(
    "NOTIFICATIONS_TWILIO_BACKEND", default="notifications.twilio_backends.TwilioBackend"
)
# The public origin Twilio reaches this site at (https://example.com): status callbacks go there, and
# Twilio's signatures are checked against it.
NOTIFICATIONS_PUBLIC_URL = env("NOTIFICATIONS_PUBLIC_URL", default="")
# JSON: {"<template>": {"content_sids": {"<language>": "HX..."}, "variables": ["<context key>", ...]}}
NOTIFICATIONS_WHATSAPP_TEMPLATES = env.json("NOTIFICATIONS_WHATSAPP_TEMPLATES", default={})
NOTIFICATIONS_SUPPRESSION_BYPASS_TEMPLATES = env.list(
    "NOTIFICATIONS_SUPPRESSION_BYPASS_TEMPLATES", default=["verification"]
)
# django-anymail's ESP webhooks (/anymail/<esp>/tracking/) check this "user:password" basic auth.
ANYMAIL = (
    {"WEBHOOK_SECRET": env("ANYMAIL_WEBHOOK_SECRET", default="")} if "ANYMAIL_WEBHOOK_SECRET" in env else {}
)


def _redis_url():
    if "REDIS_URL" in env:
        return env("REDIS_URL")
    scheme = "rediss" if env.bool("REDIS_TLS", default=False) else "redis"
    host = env("REDIS_HOST", default="127.0.0.1")
    port = env.int("REDIS_PORT", default=6379)
    return f"{scheme}://{host}:{port}/0"


REDIS_URL = _redis_url()


def redis_sentinels(value: str) -> list[tuple[str, int]]:
    """REDIS_SENTINELS ("host:port,host:port", "[::1]:26379") as (host, port) pairs."""
    sentinels = []
    for address in filter(None, (part.strip() for part in value.split(","))):
        host, separator, port = address.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not separator or not host or not port.isdigit():
            raise ImproperlyConfigured(
                f"REDIS_SENTINELS: {address!r} is not host:port "
                "(e.g. REDIS_SENTINELS=10.0.0.1:26379,10.0.0.2:26379)."
            )
        sentinels.append((host, int(port)))
    return sentinels


# Sentinel: the broker asks these for the address of REDIS_SENTINEL_MASTER, and follows a failover.
# REDIS_URL then gives the database, password and TLS; its host and port are not used.
REDIS_SENTINELS = redis_sentinels(env("REDIS_SENTINELS", default=""))
REDIS_SENTINEL_MASTER = env("REDIS_SENTINEL_MASTER", default="mymaster")

# Off by default so that a fresh checkout runs without Redis; production sets QUEUE_ENABLED=true.
QUEUE_ENABLED = env.bool("QUEUE_ENABLED", default=False)

NOTIFICATIONS_MAX_RETRIES = env.int("NOTIFICATIONS_MAX_RETRIES", default=5)
NOTIFICATIONS_MIN_BACKOFF_MS = env.int("NOTIFICATIONS_MIN_BACKOFF_MS", default=30_000)
NOTIFICATIONS_MAX_BACKOFF_MS = env.int("NOTIFICATIONS_MAX_BACKOFF_MS", default=3_600_000)
NOTIFICATIONS_TIME_LIMIT_MS = env.int("NOTIFICATIONS_TIME_LIMIT_MS", default=60_000)
NOTIFICATIONS_MAX_PAYLOAD_BYTES = env.int("NOTIFICATIONS_MAX_PAYLOAD_BYTES", default=64 * 1024)
NOTIFICATIONS_REDRIVE_AFTER_S = env.int("NOTIFICATIONS_REDRIVE_AFTER_S", default=600)
NOTIFICATIONS_SYNC_TIMEOUT_S = env.float("NOTIFICATIONS_SYNC_TIMEOUT_S", default=5.0)
NOTIFICATIONS_BREAKER_THRESHOLD = env.int("NOTIFICATIONS_BREAKER_THRESHOLD", default=5)
NOTIFICATIONS_BREAKER_WINDOW_S = env.float("NOTIFICATIONS_BREAKER_WINDOW_S", default=60.0)
NOTIFICATIONS_BREAKER_OPEN_S = env.float("NOTIFICATIONS_BREAKER_OPEN_S", default=30.0)
# "sms=50;whatsapp=20": channel name to a number.
NOTIFICATIONS_RATE_LIMITS = env.dict("NOTIFICATIONS_RATE_LIMITS", cast={"value": int}, default={})
NOTIFICATIONS_CONCURRENCY = env.dict("NOTIFICATIONS_CONCURRENCY", cast={"value": int}, default={})

# Recipients' pages: links in emails (unsubscribe) start with the site's address.
NOTIFICATIONS_SITE_URL = env("NOTIFICATIONS_SITE_URL", default="http://127.0.0.1:8000" if DEBUG else "")
NOTIFICATIONS_STREAM_ENABLED = env.bool("NOTIFICATIONS_STREAM_ENABLED", default=True)
NOTIFICATIONS_STREAM_HEARTBEAT_S = env.float("NOTIFICATIONS_STREAM_HEARTBEAT_S", default=15.0)
LOGIN_REDIRECT_URL = "/notifications/"

FAILED_JOBS_RETENTION_DAYS = env.int("FAILED_JOBS_RETENTION_DAYS", default=90)
FAILED_JOBS_DONE_RETENTION_DAYS = env.int("FAILED_JOBS_DONE_RETENTION_DAYS", default=30)
FAILED_JOBS_BULK_IN_REQUEST_MAX = env.int("FAILED_JOBS_BULK_IN_REQUEST_MAX", default=1000)
FAILED_JOBS_ALERT_EMAIL = env.bool("FAILED_JOBS_ALERT_EMAIL", default=True)
FAILED_JOBS_ALERT_WEBHOOK_URL = env("FAILED_JOBS_ALERT_WEBHOOK_URL", default="")
FAILED_JOBS_ALERT_WINDOW_S = env.int("FAILED_JOBS_ALERT_WINDOW_S", default=600)
FAILED_JOBS_ALERT_THRESHOLD = env.int("FAILED_JOBS_ALERT_THRESHOLD", default=100)
FAILED_JOBS_ALERT_DEAD_LETTER_AGE_S = env.int("FAILED_JOBS_ALERT_DEAD_LETTER_AGE_S", default=900)
FAILED_JOBS_ALERT_REPEAT_AFTER_S = env.int("FAILED_JOBS_ALERT_REPEAT_AFTER_S", default=3600)
NOTIFICATIONS_DELIVERY_RETENTION_DAYS = env.int("NOTIFICATIONS_DELIVERY_RETENTION_DAYS", default=180)
NOTIFICATIONS_READ_INAPP_RETENTION_DAYS = env.int("NOTIFICATIONS_READ_INAPP_RETENTION_DAYS", default=90)

# The HTTP API (api/, under /api/v1/): requests per client, and page sizes. Its "retry all
# matching" runs as a bulk operation past FAILED_JOBS_BULK_IN_REQUEST_MAX jobs, as the admin's.
API_RATE_LIMIT = env("API_RATE_LIMIT", default="600/minute") or None
API_PAGE_SIZE = env.int("API_PAGE_SIZE", default=100)
API_MAX_PAGE_SIZE = env.int("API_MAX_PAGE_SIZE", default=500)
REST_FRAMEWORK = {
    # The API's views set their own authentication, permissions, throttling and error format
    # (api/views.py); the schema is generated by drf-spectacular.
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Notifications API",
    "DESCRIPTION": "Failed jobs and deliveries, for back-offices and scripts (README: HTTP API).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "FailedJobStatusEnum": "failedjobs.models.FailedJob.Status",
        "DeliveryStatusEnum": "notifications.models.Delivery.Status",
        "BulkOperationStatusEnum": "failedjobs.models.BulkOperation.Status",
    },
}

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
        "dramatiq.middleware.CurrentMessage",  # circuit breakers and limits put a held message back
        "periodiq.PeriodiqMiddleware",
        "failedjobs.middleware.FailedJobMiddleware",
        # Workers' heartbeats for notifications_status ("Workers alive").
        "notifications.heartbeat.WorkerHeartbeat",
        "django_dramatiq.middleware.DbConnectionsMiddleware",
    ],
}
if REDIS_SENTINELS:
    DRAMATIQ_BROKER["OPTIONS"].update(
        sentinels=REDIS_SENTINELS,
        sentinel_master=REDIS_SENTINEL_MASTER,
        sentinel_password=env("REDIS_SENTINEL_PASSWORD", default="") or None,
    )
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

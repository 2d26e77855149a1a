"""The settings notifications reads, with their defaults: a project that sets none of them still works.

Read them with ``setting(name)``; the README's configuration table documents each.
"""

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    "NOTIFICATIONS_CHANNELS": {
        "email": "notifications.channels.email.EmailChannel",
        "sms": "notifications.channels.sms.SmsChannel",
        "whatsapp": "notifications.channels.whatsapp.WhatsAppChannel",
        "in_app": "notifications.channels.in_app.InAppChannel",
    },
    "NOTIFICATIONS_MAX_RETRIES": 5,
    "NOTIFICATIONS_MIN_BACKOFF_MS": 30_000,
    "NOTIFICATIONS_MAX_BACKOFF_MS": 3_600_000,
    "NOTIFICATIONS_TIME_LIMIT_MS": 60_000,
    "NOTIFICATIONS_MAX_PAYLOAD_BYTES": 64 * 1024,
    # A queued delivery never tried this long after it was queued lost its message: enqueue it again.
    "NOTIFICATIONS_REDRIVE_AFTER_S": 600,
    # Longest a provider call may keep a caller waiting when it runs synchronously (queue off).
    "NOTIFICATIONS_SYNC_TIMEOUT_S": 5.0,
    # Sent and failed deliveries not changed for this many days are purged; those still to send never.
    "NOTIFICATIONS_DELIVERY_RETENTION_DAYS": 180,
    # In-app notifications read this many days ago are purged; unread ones never.
    "NOTIFICATIONS_READ_INAPP_RETENTION_DAYS": 90,
    # The public origin of this site (https://example.com), as Twilio reaches it: SMS and WhatsApp
    # sends ask Twilio to report delivery there, and Twilio's signatures are checked against it.
    "NOTIFICATIONS_PUBLIC_URL": "",
    "NOTIFICATIONS_TWILIO_BACKEND": "notifications.twilio_backends.TwilioBackend",
    # Template -> {"content_sids": {language: "HX..."}, "variables": [context keys]} (channels/whatsapp.py).
    "NOTIFICATIONS_WHATSAPP_TEMPLATES": {},
    # Templates sent despite a complaint or an ESP unsubscribe (never despite STOP, a hard bounce or
    # an operator's suppression): the person asked for them a moment ago.
    "NOTIFICATIONS_SUPPRESSION_BYPASS_TEMPLATES": ["verification"],
    "TWILIO_MESSAGING_SERVICE_SID": "",
    # Circuit breakers (breaker.py): a provider's breaker opens after this many transient failures in
    # a row (0: no breakers), the run counted within the window; it stays open this long, then probes.
    "NOTIFICATIONS_BREAKER_THRESHOLD": 5,
    "NOTIFICATIONS_BREAKER_WINDOW_S": 60.0,
    "NOTIFICATIONS_BREAKER_OPEN_S": 30.0,
    # Channel name to messages a second (any one second, all workers together), and to messages at
    # once; a channel not named has no limit (limits.py).
    "NOTIFICATIONS_RATE_LIMITS": {},
    "NOTIFICATIONS_CONCURRENCY": {},
    "TWILIO_ACCOUNT_SID": "",
    "TWILIO_AUTH_TOKEN": "",
    "TWILIO_SMS_FROM": "",
    "TWILIO_WHATSAPP_FROM": "",
    "TWILIO_API_BASE_URL": "https://api.twilio.com",
    "TWILIO_TIMEOUT": 15.0,
    # After Twilio did not answer in time, the next attempt waits this long, then looks the message up
    # at Twilio before sending it again.
    "TWILIO_LOOKUP_DELAY_MS": 30_000,
    "METRICS_TOKEN": "",
    # The site's address (https://app.example.com), for links in emails such as unsubscribe links.
    "NOTIFICATIONS_SITE_URL": "",
    # Publish in-app notifications for the live stream (needs Redis, and QUEUE_ENABLED).
    "NOTIFICATIONS_STREAM_ENABLED": True,
    # Seconds between heartbeats (comment lines) on an idle live stream.
    "NOTIFICATIONS_STREAM_HEARTBEAT_S": 15.0,
}


def setting(name: str) -> Any:
    """The project's value of a notifications setting, else its default."""
    return getattr(settings, name, DEFAULTS[name])

"""System checks.

A channel missing a setting is a deployment check (``manage.py check --deploy``): a development
checkout without Twilio would otherwise print the warning on every command. Each process says once
at start which channels are configured (notifications.startup).
"""

from typing import Any

from django.conf import settings
from django.core import checks

from .channels import all_channels
from .channels.twilio import TwilioChannel, twilio_backend
from .conf import setting
from .exceptions import ChannelNotConfigured


@checks.register(checks.Tags.compatibility, deploy=True)
def check_channel_settings(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    for channel in all_channels():
        try:
            channel.check_configured()
        except ChannelNotConfigured as error:
            messages.append(
                checks.Warning(
                    str(error),
                    hint=f"Set {error.setting}, or do not send {channel.name} notifications.",
                    id=channel.check_id,
                )
            )
    return messages


@checks.register(checks.Tags.compatibility, deploy=True)
def check_receipts(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Twilio sends delivery receipts only to a public URL: without one, nothing is known past `sent`."""
    twilio_channels = [channel for channel in all_channels() if isinstance(channel, TwilioChannel)]
    if not twilio_channels or setting("NOTIFICATIONS_PUBLIC_URL") or not twilio_backend().needs_credentials:
        return []
    if not setting("TWILIO_ACCOUNT_SID"):
        return []  # the channels' own warnings say what to set first
    return [
        checks.Warning(
            "NOTIFICATIONS_PUBLIC_URL is not set: Twilio cannot report whether SMS and WhatsApp "
            "messages were delivered, and undelivered ones are never retried.",
            hint="Set NOTIFICATIONS_PUBLIC_URL to the origin Twilio reaches this site at, "
            "e.g. https://notifications.example.com.",
            id="notifications.W003",
        )
    ]


@checks.register(checks.Tags.compatibility)
def check_queue_settings(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    if getattr(settings, "QUEUE_ENABLED", False) and not getattr(settings, "REDIS_URL", "x"):
        return [checks.Error("QUEUE_ENABLED is on but REDIS_URL is empty.", id="notifications.E001")]
    return []


CURRENT_MESSAGE = "dramatiq.middleware.CurrentMessage"


@checks.register(checks.Tags.compatibility)
def check_breaker_middleware(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """Circuit breakers and limits put a held message back through CurrentMessage; without it, none holds."""
    from . import gate

    middleware = getattr(settings, "DRAMATIQ_BROKER", {}).get("MIDDLEWARE")
    if not getattr(settings, "QUEUE_ENABLED", False) or middleware is None or not gate.configured():
        return []
    if CURRENT_MESSAGE in middleware:
        return []
    return [
        checks.Warning(
            "Circuit breakers or channel limits are configured, but the broker lacks Dramatiq's "
            "CurrentMessage middleware: workers will not hold any message.",
            hint=f'Add "{CURRENT_MESSAGE}" to DRAMATIQ_BROKER["MIDDLEWARE"].',
            id="notifications.W010",
        )
    ]


@checks.register(checks.Tags.compatibility, deploy=True)
def check_site_url(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    from .conf import setting

    if setting("NOTIFICATIONS_SITE_URL"):
        return []
    return [
        checks.Warning(
            "NOTIFICATIONS_SITE_URL is not set: emails go without an unsubscribe link.",
            hint="Set it to the site's address, e.g. https://app.example.com.",
            id="notifications.W200",
        )
    ]

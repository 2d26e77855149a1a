"""System checks: tell operators at start-up which settings a channel is missing."""

from typing import Any

from django.conf import settings
from django.core import checks

from .channels import all_channels
from .exceptions import ChannelNotConfigured


@checks.register(checks.Tags.compatibility)
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
    if getattr(settings, "QUEUE_ENABLED", False) and not getattr(settings, "REDIS_URL", "x"):
        messages.append(checks.Error("QUEUE_ENABLED is on but REDIS_URL is empty.", id="notifications.E001"))
    return messages


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

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

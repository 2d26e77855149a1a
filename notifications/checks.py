"""System checks.

A channel missing a setting is a deployment check (``manage.py check --deploy``): a development
checkout without Twilio would otherwise print the warning on every command. Each process says once
at start which channels are configured (notifications.startup).
"""

from typing import Any

from django.conf import settings
from django.core import checks

from .channels import all_channels
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


@checks.register(checks.Tags.compatibility)
def check_queue_settings(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    if getattr(settings, "QUEUE_ENABLED", False) and not getattr(settings, "REDIS_URL", "x"):
        return [checks.Error("QUEUE_ENABLED is on but REDIS_URL is empty.", id="notifications.E001")]
    return []

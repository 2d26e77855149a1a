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


@checks.register(checks.Tags.compatibility)
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

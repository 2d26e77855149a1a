"""System checks: tell operators at start-up which settings a channel is missing."""

from django.conf import settings
from django.core import checks

from .channels import get_channel
from .exceptions import ChannelNotConfigured


@checks.register(checks.Tags.compatibility)
def check_channel_settings(app_configs, **kwargs):
    messages = []
    for name, check_id in (("sms", "notifications.W001"), ("whatsapp", "notifications.W002")):
        try:
            get_channel(name).check_configured()
        except ChannelNotConfigured as error:
            messages.append(
                checks.Warning(
                    str(error),
                    hint=f"Set {error.setting} in the environment, or do not send {name} notifications.",
                    id=check_id,
                )
            )
    if settings.QUEUE_ENABLED and not settings.REDIS_URL:
        messages.append(checks.Error("QUEUE_ENABLED is on but REDIS_URL is empty.", id="notifications.E001"))
    return messages

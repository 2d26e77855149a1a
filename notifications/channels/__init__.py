"""The delivery channels, declared in one place: the NOTIFICATIONS_CHANNELS setting.

Each entry maps a channel's name to its class. The class says everything about the channel: its
queue and actor (tasks.py declares one actor per entry), the settings it needs, how it checks a
recipient and finds its templates, how it sends, and what its provider's errors mean.
"""

from functools import cache

from django.utils.module_loading import import_string

from ..conf import setting
from ..exceptions import InvalidNotification
from .base import BaseChannel

__all__ = ["BaseChannel", "all_channels", "channel_registry", "get_channel"]


@cache
def channel_registry() -> dict[str, BaseChannel]:
    registry = {}
    for name, path in setting("NOTIFICATIONS_CHANNELS").items():
        channel = import_string(path)()
        channel.name = name
        registry[name] = channel
    return registry


def get_channel(name: str) -> BaseChannel:
    try:
        return channel_registry()[name]
    except (KeyError, TypeError):
        known = ", ".join(channel_registry())
        raise InvalidNotification(f"Unknown channel {name!r}; use one of: {known}.") from None


def all_channels() -> list[BaseChannel]:
    return list(channel_registry().values())

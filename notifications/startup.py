"""The line a process logs once when it starts: the queue on or off, where the broker is (without its
password), and which channels can send.

The web process logs it from its WSGI module (project/wsgi.py), workers from ``rundramatiq`` and the
scheduler from ``runperiodiq``. It replaces the channel warnings of Django's system checks, which
would otherwise be printed by every management command (they remain in ``check --deploy``).
"""

import logging

import dramatiq
import redis

from failedjobs.conf import setting as failedjobs_setting

from .broker import describe_client
from .channels import all_channels
from .exceptions import ChannelNotConfigured

logger = logging.getLogger("notifications")


def log_mode(process: str) -> None:
    """Log, at INFO, which mode ``process`` (web, worker, scheduler) runs in."""
    logger.info("%s: %s", process, describe_mode())


def describe_mode() -> str:
    return f"{describe_queue()}; {describe_channels()}"


def describe_queue() -> str:
    if not failedjobs_setting("QUEUE_ENABLED"):
        return "queue off (QUEUE_ENABLED=false): notifications are sent in the calling process"
    broker = dramatiq.get_broker()
    client = getattr(broker, "client", None)
    where = describe_client(client) if isinstance(client, redis.Redis) else type(broker).__name__
    return f"queue on, broker {where}"


def describe_channels() -> str:
    configured, missing = [], []
    for channel in all_channels():
        try:
            channel.check_configured()
        except ChannelNotConfigured as error:
            missing.append(f"{channel.name} (needs {error.setting})")
        else:
            configured.append(channel.name)
    text = f"channels configured: {', '.join(configured) or 'none'}"
    if missing:
        text += f"; not configured: {', '.join(missing)}"
    return text

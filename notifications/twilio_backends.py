"""Where SMS and WhatsApp messages go: Twilio, or, in development and tests, the console or memory.

Chosen by NOTIFICATIONS_TWILIO_BACKEND, like Django's EMAIL_BACKEND:

- ``notifications.twilio_backends.TwilioBackend`` (the default): Twilio's API, through its SDK.
- ``notifications.twilio_backends.ConsoleBackend``: each message printed on standard output.
- ``notifications.twilio_backends.LocmemBackend``: each message appended to ``outbox`` in this
  module, for a host project's tests (``notifications.twilio_backends.outbox``).

A message is the keyword arguments of Twilio's ``messages.create``: ``to``, ``from_`` or
``messaging_service_sid``, ``body`` or ``content_sid`` and ``content_variables``, and
``status_callback`` when NOTIFICATIONS_PUBLIC_URL is set.
"""

import json
import sys
import threading
import uuid
from datetime import datetime
from typing import Any

#: What LocmemBackend sent, oldest first. Cleared by nobody but the caller.
outbox: list[dict[str, Any]] = []
_lock = threading.Lock()


class BaseTwilioBackend:
    #: Whether the channels need TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN to use it.
    needs_credentials = False

    def send(self, message: dict[str, Any]) -> str:
        """Send one message and return its SID; the provider's exceptions propagate."""
        raise NotImplementedError

    def find(self, to: str, from_: str | None, body: str, since: datetime) -> str | None:
        """The SID of a message accepted to ``to`` with this body since then, if any."""
        return None


class TwilioBackend(BaseTwilioBackend):
    needs_credentials = True

    def send(self, message: dict[str, Any]) -> str:
        from .channels.twilio import twilio_client

        return twilio_client().messages.create(**message).sid

    def find(self, to: str, from_: str | None, body: str, since: datetime) -> str | None:
        from .channels.twilio import twilio_client

        filters = {"to": to} if from_ is None else {"to": to, "from_": from_}
        for message in twilio_client().messages.list(**filters, limit=50):
            if message.body == body and message.date_created is not None and message.date_created >= since:
                return message.sid
        return None


def local_sid() -> str:
    return "SM" + uuid.uuid4().hex


class ConsoleBackend(BaseTwilioBackend):
    """Prints each message, as Django's console email backend prints each email."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout

    def send(self, message: dict[str, Any]) -> str:
        sid = local_sid()
        lines = [f"{name}: {value}" for name, value in message.items() if name != "body" and value]
        if "body" in message:
            lines += ["", message["body"]]
        with _lock:
            self.stream.write(f"Twilio message {sid}\n" + "\n".join(lines) + "\n" + "-" * 79 + "\n")
            self.stream.flush()
        return sid


class LocmemBackend(BaseTwilioBackend):
    """Keeps each message in ``outbox``, with its ``sid``; ContentVariables decoded as ``variables``."""

    def send(self, message: dict[str, Any]) -> str:
        sid = local_sid()
        kept = {**message, "sid": sid}
        if "content_variables" in message:
            kept["variables"] = json.loads(message["content_variables"])
        with _lock:
            outbox.append(kept)
        return sid

    def find(self, to: str, from_: str | None, body: str, since: datetime) -> str | None:
        with _lock:
            for message in outbox:
                if message["to"] == to and message.get("body") == body:
                    return message["sid"]
        return None

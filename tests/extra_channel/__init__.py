"""A channel added by a host project, to show that declaring it in NOTIFICATIONS_CHANNELS is enough."""

from typing import Any

from notifications.channels.base import BaseChannel
from notifications.payload import Payload

SENT: list[str] = []


class PigeonChannel(BaseChannel):
    label = "Carrier pigeon"

    def clean_recipient(self, recipient: Any) -> str:
        return str(recipient)

    def check_template(self, template: str, language: str) -> None:
        pass

    def send(self, payload: Payload) -> str:
        SENT.append(f"{payload['recipient']}: {payload['context']['text']}")
        return f"pigeon-{len(SENT)}"

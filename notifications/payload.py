from typing import Any, TypedDict


class Payload(TypedDict):
    """What a delivery message carries: the keyword arguments of a channel's actor."""

    delivery_id: int
    channel: str
    recipient: str
    template: str
    context: dict[str, Any]
    language: str

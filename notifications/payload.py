from typing import Any, NotRequired, TypedDict


class Payload(TypedDict):
    """What a delivery message carries: the keyword arguments of a channel's actor."""

    delivery_id: int
    channel: str
    recipient: str
    template: str
    context: dict[str, Any]
    language: str
    #: A delivery that waited (the dispatcher sends it): whose preferences to check again as it goes.
    for_user_id: NotRequired[int]
    category: NotRequired[str]

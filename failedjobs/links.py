"""Links from a failed job to what it was about, for the apps that send the messages.

failedjobs knows nothing of those apps: each registers a function that takes a FailedJob and returns
a (label, URL) pair, or None for jobs that are not its own. The admin shows the links on a failed job.
"""

from collections.abc import Callable

from .models import FailedJob

Link = tuple[str, str]
LinkMaker = Callable[[FailedJob], Link | None]

_makers: list[LinkMaker] = []


def register(maker: LinkMaker) -> LinkMaker:
    """Add a link maker (usable as a decorator); registering one twice adds it once."""
    if maker not in _makers:
        _makers.append(maker)
    return maker


def links_for(job: FailedJob) -> list[Link]:
    return [link for maker in _makers if (link := maker(job)) is not None]

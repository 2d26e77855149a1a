"""Failed jobs grouped by cause (their error signature): how many, since when, and the last day's trend."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Max, Min, QuerySet
from django.db.models.functions import TruncHour
from django.utils import timezone

from .models import FailedJob

TREND_HOURS = 24
BARS = "▁▂▃▄▅▆▇█"


@dataclass
class ErrorGroup:
    signature: str
    count: int
    first_seen: datetime
    last_seen: datetime
    #: Failures in each of the last TREND_HOURS hours, oldest first.
    trend: list[int] = field(default_factory=lambda: [0] * TREND_HOURS)

    @property
    def exception_class(self) -> str:
        return self.signature.partition(": ")[0].partition(" [")[0]

    @property
    def error_code(self) -> str:
        head = self.signature.partition(": ")[0]
        return head.partition(" [")[2].rstrip("]")

    @property
    def last_day(self) -> int:
        return sum(self.trend)

    @property
    def sparkline(self) -> str:
        """The trend as bars: the lowest for none, the highest for the group's busiest hour."""
        highest = max(self.trend)
        if not highest:
            return BARS[0] * len(self.trend)
        return "".join(BARS[0] if n == 0 else BARS[1 + (n * (len(BARS) - 2)) // highest] for n in self.trend)


def error_groups(
    jobs: QuerySet[FailedJob], *, limit: int = 200, now: datetime | None = None
) -> list[ErrorGroup]:
    """The groups of ``jobs``, largest first, with counts per hour over the last day."""
    rows = (
        jobs.order_by()
        .values("error_signature")
        .annotate(count=Count("*"), first_seen=Min("failed_at"), last_seen=Max("failed_at"))
        .order_by("-count", "error_signature")[:limit]
    )
    groups = {
        row["error_signature"]: ErrorGroup(
            row["error_signature"], row["count"], row["first_seen"], row["last_seen"]
        )
        for row in rows
    }
    add_trends(jobs, groups, now or timezone.now())
    return list(groups.values())


def add_trends(jobs: QuerySet[FailedJob], groups: dict[str, ErrorGroup], now: datetime) -> None:
    if not groups:
        return
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    since = this_hour - timedelta(hours=TREND_HOURS - 1)
    counts = (
        jobs.order_by()
        .filter(error_signature__in=list(groups), failed_at__gte=since)
        .annotate(hour=TruncHour("failed_at", tzinfo=now.tzinfo))
        .values("error_signature", "hour")
        .annotate(n=Count("*"))
    )
    for row in counts:
        index = int((row["hour"] - since).total_seconds() // 3600)
        if 0 <= index < TREND_HOURS:
            groups[row["error_signature"]].trend[index] += row["n"]

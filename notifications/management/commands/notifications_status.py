import json
from argparse import ArgumentParser
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from notifications.status import PipelineStatus, pipeline_status


def ago(moment: datetime | None) -> str:
    if moment is None:
        return "never seen"
    seconds = (timezone.now() - moment).total_seconds()
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC ({seconds:.0f} s ago)"


def as_dict(status: PipelineStatus) -> dict[str, Any]:
    return {
        "queues": [vars(queue) for queue in status.queues],
        "workers_alive": status.workers,
        "scheduler_last_tick": status.scheduler_last_tick.isoformat() if status.scheduler_last_tick else None,
        "failed_jobs": [
            {
                "signature": group.signature,
                "count": group.count,
                "first_seen": group.first_seen.isoformat(),
                "last_seen": group.last_seen.isoformat(),
                "last_day": group.last_day,
            }
            for group in status.groups
        ],
        "circuit_breakers": [vars(breaker) for breaker in status.breakers],
        "redis_error": status.redis_error,
    }


class Command(BaseCommand):
    help = (
        "Show what waits where: per queue, messages waiting, delayed (retries), in Redis's dead-letter "
        "queue and the oldest one's age; workers alive; the scheduler's last tick; the circuit breakers and "
        "the deliveries they hold; failed jobs by cause."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the status as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        status = pipeline_status()
        if options["json"]:
            self.stdout.write(json.dumps(as_dict(status), indent=2))
            return
        if status.redis_error:
            self.stdout.write(f"Queues: not read ({status.redis_error})")
        else:
            self.write_queues(status)
            self.stdout.write(f"Workers alive: {status.workers} (workers with a heartbeat in Redis)")
            self.stdout.write(f"Scheduler's last tick: {ago(status.scheduler_last_tick)}")
            for breaker in status.breakers:
                self.stdout.write(f"Circuit breaker {breaker}")
        self.write_groups(status)

    def write_queues(self, status: PipelineStatus) -> None:
        self.stdout.write(f"{'queue':<20} {'waiting':>8} {'delayed':>8} {'dead':>6}  oldest")
        for queue in status.queues:
            oldest = "-" if queue.oldest_age_s is None else f"{queue.oldest_age_s:.0f} s"
            self.stdout.write(
                f"{queue.name:<20} {queue.waiting:>8} {queue.delayed:>8} {queue.dead:>6}  {oldest}"
            )

    def write_groups(self, status: PipelineStatus) -> None:
        groups = status.groups
        self.stdout.write(f"Failed jobs waiting: {status.failed_jobs} in {len(groups)} group(s)")
        for group in groups:
            self.stdout.write(f"{group.count:>8}  {group.signature}  (last {group.last_seen:%Y-%m-%d %H:%M})")

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from notifications.health import run_checks


class Command(BaseCommand):
    help = (
        "Check that the database and Redis answer, as /readyz does: one line per check, exit 1 when "
        "one failed (for container health checks and cron). --json prints /readyz's body instead."
    )
    # Django's system checks are not what is asked, and their warnings would clutter a probe's output.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the JSON that /readyz answers")

    def handle(self, *args: Any, **options: Any) -> None:
        readiness = run_checks()
        if options["json"]:
            self.stdout.write(json.dumps(readiness.as_dict()))
        else:
            for name, result in readiness.checks.items():
                self.stdout.write(result.line(name))
        if not readiness.ok:
            raise CommandError(f"Unhealthy: {', '.join(readiness.failed)} failed.")

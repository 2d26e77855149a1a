import os
import sys
from pathlib import Path

from django.core.management.base import BaseCommand

from failedjobs.signals import scheduler_starting


def periodiq_executable():
    """The periodiq script installed beside this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / "periodiq"
    return str(beside) if beside.is_file() else "periodiq"


class Command(BaseCommand):
    help = "Run the periodiq scheduler, which enqueues the periodic jobs. Run exactly one."

    def handle(self, *args, verbosity, **options):
        command = [periodiq_executable(), "django_dramatiq.setup", *["-v"] * max(verbosity - 1, 0)]
        scheduler_starting.send(sender=self.__class__)
        self.stdout.write(f" * Running periodiq: {' '.join(command)}")
        self.stdout.flush()
        os.execvp(command[0], command)

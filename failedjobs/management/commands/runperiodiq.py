import os
import sys

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the periodiq scheduler, which enqueues the periodic actors (run exactly one)."

    def handle(self, *args, verbosity, **options):
        command = [sys.executable, "-m", "periodiq", "django_dramatiq.setup", *["-v"] * max(verbosity - 1, 0)]
        self.stdout.write(f" * Running periodiq: {' '.join(command)}")
        self.stdout.flush()
        os.execvp(command[0], command)

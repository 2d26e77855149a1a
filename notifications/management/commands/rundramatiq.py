import os

from django_dramatiq.management.commands.rundramatiq import Command as DramatiqCommand


class Command(DramatiqCommand):
    """django_dramatiq's rundramatiq, whose workers format tracebacks without Python's position markers.

    Every failed attempt formats its traceback (Dramatiq's Retries keeps it with the message). Python
    3.11 re-parses each line of it to draw the ^^^ markers under the failing expression, which was a
    sixth of a worker's CPU in a failure storm (bench W2). PYTHONNODEBUGRANGES=1 drops them, for the
    worker processes only; set PYTHONNODEBUGRANGES to an empty value to keep them.
    """

    def handle(self, *args, **options):
        os.environ.setdefault("PYTHONNODEBUGRANGES", "1")
        return super().handle(*args, **options)

"""Signals for the apps that send messages through failedjobs' store, as django-anymail's are.

- ``job_failed``: a message failed for good and is now a FailedJob row. Arguments: ``message`` (the
  Dramatiq message), ``exception`` (the error, or None when it was recovered from Redis and only its
  text is known), ``error`` (one line: the error's class and text) and ``job_id``.
- ``jobs_retried``: failed jobs are being sent again, inside the transaction that marks them retried
  and before their messages reach the broker. Argument: ``messages``, the fresh copies.
- ``synchronous_run_failed``: a message run in the calling process (queue off, broker unreachable)
  raised. Arguments: ``message``, ``exception``. A receiver that returns True takes the failure
  over (for instance, schedules a retry); otherwise it is filed as a failed job.
- ``scheduler_starting``: ``manage.py runperiodiq`` is about to start the scheduler (for a start-up
  log line). No arguments.
"""

from django.dispatch import Signal

job_failed = Signal()
jobs_retried = Signal()
synchronous_run_failed = Signal()
scheduler_starting = Signal()

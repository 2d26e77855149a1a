"""Baselines: bare actors on the project's broker and middleware, with none of the notification code.

- insert_in_app (W1-bare): the same InAppNotification insert as W1, with no Delivery row.
- do_nothing (W1-noop): no work at all; what Dramatiq and Redis alone cost a message.
- always_fails (W2-bare): a message that fails at once, with W2's retries; the project's middleware
  files it as a FailedJob. What the dead-letter path costs without a provider call.

Run by ``dramatiq django_dramatiq.setup bench.bare_actors`` (PYTHONPATH at the top of the repository),
so Django and the project's broker and middleware are set up first.
"""

import dramatiq

from notifications.models import InAppNotification


@dramatiq.actor(queue_name="bench_bare", max_retries=0)
def insert_in_app(recipient_id, title):
    InAppNotification.objects.create(recipient_id=recipient_id, title=title)


@dramatiq.actor(queue_name="bench_noop", max_retries=0)
def do_nothing(number):
    pass


@dramatiq.actor(queue_name="bench_fails", max_retries=2, min_backoff=10, max_backoff=50)
def always_fails(number):
    raise RuntimeError(f"Bench failure {number}")

"""The baseline for W1: a bare actor doing the same InAppNotification insert, with no Delivery row.

Run by ``dramatiq django_dramatiq.setup bench.bare_actors`` (PYTHONPATH at the top of the repository),
so Django and the project's broker and middleware are set up first.
"""

import dramatiq

from notifications.models import InAppNotification


@dramatiq.actor(queue_name="bench_bare", max_retries=0)
def insert_in_app(recipient_id, title):
    InAppNotification.objects.create(recipient_id=recipient_id, title=title)

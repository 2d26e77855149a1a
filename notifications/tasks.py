"""One thin actor per channel, each on its own queue so that it can be scaled and throttled alone."""

import dramatiq
from django.conf import settings

from .delivery import deliver
from .exceptions import PermanentDeliveryError

RETRY_OPTIONS = {
    "max_retries": settings.NOTIFICATIONS_MAX_RETRIES,
    "min_backoff": settings.NOTIFICATIONS_MIN_BACKOFF_MS,
    "max_backoff": settings.NOTIFICATIONS_MAX_BACKOFF_MS,
    "time_limit": settings.NOTIFICATIONS_TIME_LIMIT_MS,
    "throws": (PermanentDeliveryError,),
}


@dramatiq.actor(queue_name="email", **RETRY_OPTIONS)
def deliver_email(**payload):
    deliver(payload)


@dramatiq.actor(queue_name="sms", **RETRY_OPTIONS)
def deliver_sms(**payload):
    deliver(payload)


@dramatiq.actor(queue_name="whatsapp", **RETRY_OPTIONS)
def deliver_whatsapp(**payload):
    deliver(payload)


@dramatiq.actor(queue_name="in_app", **RETRY_OPTIONS)
def deliver_in_app(**payload):
    deliver(payload)


ACTORS = {
    "email": deliver_email,
    "sms": deliver_sms,
    "whatsapp": deliver_whatsapp,
    "in_app": deliver_in_app,
}

"""The delivery channels, by name."""

from functools import cache

from django.utils.module_loading import import_string

CHANNEL_CLASSES = {
    "email": "notifications.channels.email.EmailChannel",
    "sms": "notifications.channels.sms.SmsChannel",
    "whatsapp": "notifications.channels.whatsapp.WhatsAppChannel",
    "in_app": "notifications.channels.in_app.InAppChannel",
}


@cache
def get_channel(name):
    return import_string(CHANNEL_CLASSES[name])()

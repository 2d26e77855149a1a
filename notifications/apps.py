from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self):
        # Declare the actors on the broker now, so that senders and workers share them.
        from . import checks, tasks  # noqa: F401

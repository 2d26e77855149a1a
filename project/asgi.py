import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
application = get_asgi_application()

from notifications.startup import log_mode  # noqa: E402  (after Django is set up)

log_mode("web")

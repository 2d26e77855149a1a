"""The endpoints for a host project's urls.py: ``path("", include("notifications.urls"))``.

None needs a login: container probes and Prometheus call the operators' ones (``METRICS_TOKEN``
guards /metrics), and Twilio calls its webhooks, which check Twilio's signature.
"""

from django.urls import path

from .health import healthz, readyz
from .metrics import metrics
from .webhooks import twilio_inbound, twilio_status

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("webhooks/twilio/status/<int:delivery_id>", twilio_status, name="twilio_status"),
    path("webhooks/twilio/inbound", twilio_inbound, name="twilio_inbound"),
]

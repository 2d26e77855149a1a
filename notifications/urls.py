"""The operators' endpoints, for a host project's urls.py: ``path("", include("notifications.urls"))``.

None needs a login: container probes and Prometheus call them (``METRICS_TOKEN`` guards /metrics).
"""

from django.urls import path

from .health import healthz, readyz
from .metrics import metrics

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
]

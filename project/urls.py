from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # /healthz, /readyz and /metrics
    path("", include("notifications.urls")),
    # The email provider's tracking webhooks, as django-anymail documents them.
    path("anymail/", include("anymail.urls")),
]

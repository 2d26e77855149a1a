from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("api.urls")),
    # /healthz, /readyz and /metrics
    path("", include("notifications.urls")),
    # The email provider's tracking webhooks, as django-anymail documents them.
    path("anymail/", include("anymail.urls")),
]

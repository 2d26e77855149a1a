from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("api.urls")),
    # Sign-in and sign-out for the recipients' pages.
    path("accounts/", include("django.contrib.auth.urls")),
    # The inbox, notification settings, unsubscribe links and the live stream (serve
    # /notifications/stream/ over ASGI: see the README).
    path("notifications/", include("notifications.recipient_urls")),
    # /healthz, /readyz and /metrics
    path("", include("notifications.urls")),
    # The email provider's tracking webhooks, as django-anymail documents them.
    path("anymail/", include("anymail.urls")),
]

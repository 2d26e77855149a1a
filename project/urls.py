from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # /healthz, /readyz and /metrics
    path("", include("notifications.urls")),
]

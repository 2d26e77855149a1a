"""The HTTP API, for a project's urls.py: ``path("api/v1/", include("api.urls"))``."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from . import views

app_name = "api"

urlpatterns = [
    path("failed-jobs/", views.FailedJobList.as_view(), name="failed-job-list"),
    path("failed-jobs/retry/", views.FailedJobRetryMatching.as_view(), name="failed-job-retry-matching"),
    path("failed-jobs/<int:pk>/", views.FailedJobDetail.as_view(), name="failed-job-detail"),
    path("failed-jobs/<int:pk>/retry/", views.FailedJobRetry.as_view(), name="failed-job-retry"),
    path("failed-jobs/<int:pk>/resolve/", views.FailedJobResolve.as_view(), name="failed-job-resolve"),
    path("bulk-operations/<int:pk>/", views.BulkOperationDetail.as_view(), name="bulk-operation-detail"),
    path("deliveries/", views.DeliveryList.as_view(), name="delivery-list"),
    path("deliveries/<int:pk>/", views.DeliveryDetail.as_view(), name="delivery-detail"),
    path("deliveries/<int:pk>/cancel/", views.DeliveryCancel.as_view(), name="delivery-cancel"),
    # The OpenAPI 3 schema, in YAML, or JSON with ?format=json. Public: it holds no data.
    path(
        "schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]),
        name="schema",
    ),
]

"""The recipients' pages and API, for a host project's urls.py:
``path("notifications/", include("notifications.recipient_urls"))``.

Serve ``stream/`` over ASGI (see the README): it holds a connection open per browser tab.
"""

from django.urls import path

from . import stream, views

app_name = "recipients"

urlpatterns = [
    path("", views.inbox_page, name="inbox"),
    path("preferences/", views.preferences_page, name="preferences"),
    path("unsubscribe/<str:token>/", views.unsubscribe_page, name="unsubscribe"),
    path("stream/", stream.stream_view, name="stream"),
    path("api/inbox/", views.api_inbox, name="api-inbox"),
    path("api/inbox/unread-count/", views.api_unread_count, name="api-unread-count"),
    path("api/inbox/read-all/", views.api_mark_all_read, name="api-read-all"),
    path("api/inbox/<int:pk>/", views.api_notification, name="api-notification"),
    path("api/inbox/<int:pk>/read/", views.api_mark_read, name="api-read"),
    path("api/preferences/", views.api_preferences, name="api-preferences"),
]

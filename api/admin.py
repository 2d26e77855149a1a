from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from .models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Clients of the HTTP API. A token's key is shown once, when it is made; only its hash is kept."""

    list_display = ("name", "scope", "key_start", "created_by", "created_at", "last_used_at", "revoked_at")
    list_filter = ("scope", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("name",)
    readonly_fields = ("key_start", "created_by", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke_selected"]

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key = obj.set_new_key()
        obj.created_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)
        self.message_user(
            request,
            f"The key of API token “{obj.name}” is {key} . Copy it now: it is not shown again.",
            messages.WARNING,
        )

    @admin.action(description="Revoke selected API tokens", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{revoked} API token(s) revoked: their keys are refused from now on.")

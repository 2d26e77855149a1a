"""What a caller may do: a token by its scope, a staff member by the admin's model permissions."""

from django.db.models import Model
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from .models import ApiToken

#: The model permission an HTTP method needs, as in the admin: view to look, change to act.
METHOD_PERMISSIONS = {"GET": "view", "HEAD": "view", "OPTIONS": "view", "POST": "change", "DELETE": "delete"}


def may(request: Request, action: str, model: type[Model]) -> bool:
    """Whether the caller may ``action`` ("view", "change" or "delete") objects of ``model``."""
    token = request.auth
    if isinstance(token, ApiToken):
        return action == "view" or token.may_act
    user = request.user
    opts = model._meta
    if action == "view" and user.has_perm(f"{opts.app_label}.change_{opts.model_name}"):
        return True  # as in the admin: who may change may look
    return bool(user.has_perm(f"{opts.app_label}.{action}_{opts.model_name}"))


def may_see_unmasked(request: Request, model: type[Model]) -> bool:
    """Recipients, arguments and errors in full for callers that may act (the ``act`` scope)."""
    return may(request, "change", model)


class ModelAccess(BasePermission):
    """Allows a request when the caller may do what its method does to the view's ``model``."""

    message = "This API token or user may not do this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        action = METHOD_PERMISSIONS.get(request.method or "", "change")
        model = view.model
        if not may(request, action, model):
            if isinstance(request.auth, ApiToken):
                self.message = f"This API token has the {request.auth.scope} scope; this needs act."
            self.code = "permission_denied"
            return False
        return True

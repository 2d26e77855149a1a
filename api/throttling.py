from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from .conf import setting
from .models import ApiToken


class ClientRateThrottle(SimpleRateThrottle):
    """API_RATE_LIMIT requests per token, or per staff member's session, counted in Django's cache."""

    scope = "api"

    def get_rate(self) -> str | None:
        return setting("API_RATE_LIMIT")

    def get_cache_key(self, request: Request, view: APIView) -> str:
        if isinstance(request.auth, ApiToken):
            ident = f"token-{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"address-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}

"""Every error as JSON with a stable ``code``: ``{"code": "not_found", "detail": "..."}``.

401 no key or a refused one, 403 not allowed, 404 no such object, 409 the object is not in a state
that allows it, 422 invalid parameters (with ``errors`` per field), 429 too many requests.
"""

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object is not in a state that allows this."
    default_code = "conflict"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return None  # an unexpected error: Django's 500
    if isinstance(exc, exceptions.ValidationError):
        response.status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
        response.data = {"code": "invalid", "detail": "Invalid parameters.", "errors": exc.detail}
        return response
    code = getattr(exc.detail, "code", None) or exc.default_code
    detail = str(exc.detail)
    if code == "not_authenticated":
        detail = "Authentication needed: 'Authorization: Bearer <key>', or a staff member's session."
    response.data = {"code": code, "detail": detail}
    return response

"""Keyset pagination: a page continues after the last row of the previous one, never at an offset.

Rows are ordered newest first on (``field``, pk), which the models' indexes serve, and ``next`` holds
the last row's pair. Rows added while a client walks the pages are newer than every row it has to
see, so each row that was there when it started is seen exactly once, however deep the page.
"""

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils.dateparse import parse_datetime
from rest_framework import exceptions
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from failedjobs.admin import EstimatedCountPaginator

from .conf import setting

CURSOR = "cursor"
LIMIT = "limit"


class KeysetPagination(BasePagination):
    #: The timestamp that orders the rows; with the pk, it is unique.
    field = "created_at"

    def paginate_queryset(self, queryset: QuerySet, request: Request, view: Any = None) -> list[Any]:
        size = page_size(request)
        rows = queryset.order_by(f"-{self.field}", "-pk")
        self.count, self.count_is_exact = estimated_count(rows)
        cursor = request.query_params.get(CURSOR)
        if cursor:
            moment, pk = decode_cursor(cursor)
            # "at or before" lets the index start the scan at the cursor; the exclude drops what came
            # before it at the same moment.
            rows = rows.filter(**{f"{self.field}__lte": moment}).exclude(
                **{self.field: moment, "pk__gte": pk}
            )
        page = list(rows[: size + 1])
        self.next = None
        if len(page) > size:
            page = page[:size]
            last = page[-1]
            url = request.build_absolute_uri()
            self.next = replace_query_param(url, CURSOR, encode_cursor(getattr(last, self.field), last.pk))
        return page

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {"next": self.next, "count": self.count, "count_is_exact": self.count_is_exact, "results": data}
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["next", "count", "count_is_exact", "results"],
            "properties": {
                "next": {
                    "type": "string",
                    "format": "uri",
                    "nullable": True,
                    "description": "The next page, or null on the last one.",
                },
                "count": {
                    "type": "integer",
                    "description": "Rows matching; past 10,000, PostgreSQL's estimate.",
                },
                "count_is_exact": {"type": "boolean"},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": CURSOR,
                "in": "query",
                "required": False,
                "description": "From a previous page's next link.",
                "schema": {"type": "string"},
            },
            {
                "name": LIMIT,
                "in": "query",
                "required": False,
                "description": f"Rows per page (default {setting('API_PAGE_SIZE')}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": setting("API_MAX_PAGE_SIZE")},
            },
        ]


class FailedAtPagination(KeysetPagination):
    field = "failed_at"


def page_size(request: Request) -> int:
    value = request.query_params.get(LIMIT)
    if value is None:
        return setting("API_PAGE_SIZE")
    maximum = setting("API_MAX_PAGE_SIZE")
    if not value.isdigit() or not 1 <= int(value) <= maximum:
        raise exceptions.ValidationError({LIMIT: [f"A number from 1 to {maximum}."]})
    return int(value)


def estimated_count(queryset: QuerySet) -> tuple[int, bool]:
    """(rows, exact): counted up to the admin's threshold, the planner's estimate past it."""
    paginator = EstimatedCountPaginator(queryset, 1)
    count = paginator.count
    return count, count <= paginator.threshold


def encode_cursor(moment: datetime, pk: int) -> str:
    text = json.dumps([moment.isoformat(), pk], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        value, pk = json.loads(text)
        moment = parse_datetime(value)
        if moment is None or not isinstance(pk, int):
            raise ValueError(cursor)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise exceptions.ValidationError({CURSOR: ["Not a cursor from a next link."]}) from None
    return moment, pk

"""The API's parts that need no database: its place among the apps, cursors, masking."""

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rest_framework.exceptions import ValidationError

from api.pagination import decode_cursor, encode_cursor
from api.serializers import masked
from tests.helpers import ROOT


def imported_modules(app: Path) -> set[str]:
    imported = set()
    for path in app.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    return imported


@pytest.mark.parametrize("app", ["notifications", "failedjobs"])
def test_the_apps_never_import_the_api(app):
    imported = imported_modules(ROOT / app)
    assert sorted(name for name in imported if name.split(".")[0] in {"api", "rest_framework"}) == []
    assert "dramatiq" in imported  # the walk did read the app


def test_a_cursor_gives_back_its_moment_and_pk():
    moment = datetime(2026, 12, 3, 12, 0, 0, 123456, tzinfo=UTC)
    assert decode_cursor(encode_cursor(moment, 42)) == (moment, 42)


@pytest.mark.parametrize(
    "cursor", ["", "garbage", "WzEsMl0", encode_cursor(datetime.now(UTC), 1)[:-3] + "!!"]
)
def test_a_broken_cursor_is_a_validation_error(cursor):
    with pytest.raises(ValidationError):
        decode_cursor(cursor)


def test_masked_masks_every_text_in_a_json_value():
    value = {"to": ["ada@example.com", 3], "link": "https://x.example/t/abc", "n": None}
    assert masked(value) == {"to": ["a***a@example.com", 3], "link": "https://x.example/…", "n": None}

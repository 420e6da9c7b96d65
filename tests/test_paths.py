"""The one path helper (SOURCES.md §0): dotted paths and JSON Pointers, and what a malformed one says."""

from __future__ import annotations

from typing import Any

import pytest

from pullctl.config.paths import MISSING, PathError, describe, lookup, parse_path

DOC: dict[str, Any] = {
    "data": {"items": [{"id": 1}, {"id": 2}, {"id": 3}]},
    "@odata.nextLink": "https://graph.example/next",
    "links": {"next": "/p2", "a/b": 1, "m~n": 2},
    "0": "a key named 0",
    "empty": None,
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("data.items.0.id", 1),
        ("data.items.-1.id", 3),
        ("data.items.-3.id", 1),
        ("/@odata.nextLink", "https://graph.example/next"),
        ("/links/next", "/p2"),
        ("/links/a~1b", 1),
        ("/links/m~0n", 2),
        ("/data/items/-1/id", 3),
        ("0", "a key named 0"),
        ("empty", None),
    ],
)
def test_lookup_resolves(path: str, value: Any) -> None:
    assert lookup(DOC, path) == value


@pytest.mark.parametrize(
    "path", ["data.items.3.id", "data.items.-4", "data.nope", "@odata.nextLink", "data.items.x"]
)
def test_lookup_misses(path: str) -> None:
    assert lookup(DOC, path, MISSING) is MISSING
    assert lookup(DOC, path) is None


def test_find_says_how_far_it_got() -> None:
    found = parse_path("data.items.7.id").find(DOC)
    assert found.missing and found.depth == 2 and found.stopped_at == DOC["data"]["items"]
    assert not parse_path("empty").find(DOC).missing  # a JSON null is there, and is None


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "a path cannot be empty: write a dotted path (data.items) or a JSON Pointer (/data)"),
        (
            "data..id",
            "'data..id' has an empty segment; for a key that holds a dot use a JSON Pointer such as '/data..id'",
        ),
        ("a.", "'a.' has an empty segment; for a key that holds a dot use a JSON Pointer such as '/a.'"),
        ("/a~2b", "'/a~2b' is not a valid JSON Pointer: '~' must be followed by 0 (for '~') or 1 (for '/')"),
    ],
)
def test_malformed_paths(path: str, message: str) -> None:
    with pytest.raises(PathError) as exc:
        parse_path(path)
    assert str(exc.value) == message


def test_describe() -> None:
    assert describe([1, 2]) == "a list of 2 items"
    assert describe({"a": 1, "b": 2}) == "an object with keys a, b"
    assert describe({}) == "an empty object"
    assert describe("x" * 200).endswith("...") and len(describe("x" * 200)) == 120

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pullctl.config import templates

CTX = {
    "region": {"id": "r1", "latitude": 52.52, "nested": {"code": "DE"}, "flag": True, "empty": None},
    "window": {"start": datetime(2026, 1, 2, 6, tzinfo=UTC), "end": datetime(2026, 1, 3, 6, tzinfo=UTC)},
    "run": {"id": "run-1"},
    "source": {"id": "weather-api"},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{region.latitude}", "52.52"),
        ("{region.nested.code}-{source.id}", "DE-weather-api"),
        ("{window.start}", "2026-01-02T06:00:00+00:00"),
        ("{window.start:%Y-%m-%d}", "2026-01-02"),
        ("{region.flag}", "true"),
        ("{{literal}} {run.id}", "{literal} run-1"),
        ("no templates", "no templates"),
        ("{region.latitude:.1f}", "52.5"),
    ],
)
def test_render(text: str, expected: str) -> None:
    assert templates.parse(text).render(CTX) == expected


@pytest.mark.parametrize(
    "text", ["{region.empty}", "{region.missing}", "{nothing.here}", "{region.id.deeper}"]
)
def test_missing_or_null_value_is_refused(text: str) -> None:
    with pytest.raises(templates.MissingValue) as exc:
        templates.parse(text).render(CTX)
    assert str(exc.value) == f"{text} is missing or null"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{unclosed", "unmatched '{' at position 0 in '{unclosed' (write '{{' for a literal brace)"),
        ("closed}", "unmatched '}' at position 6 in 'closed}' (write '}}' for a literal brace)"),
        ("{}", "'{}' is not a variable reference like {item.field}"),
        ("{a b}", "'{a b}' is not a variable reference like {item.field}"),
    ],
)
def test_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(templates.TemplateSyntaxError) as exc:
        templates.parse(text)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    "hostile", ["../admin", "@evil.example", "x?y=1#z", "%2F..%2F", "a/b", "evil.example:80/"]
)
def test_url_values_cannot_change_host_or_path(hostile: str) -> None:
    url = templates.parse("https://api.example.com/v1/regions/{region.id}/forecast").render(
        {"region": {"id": hostile}}, quote_values=True
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname) == ("https", "api.example.com")
    assert parts.path.split("/")[:4] == ["", "v1", "regions", parts.path.split("/")[3]]
    assert parts.path.endswith("/forecast") and parts.path.count("/") == 4
    assert parts.query == "" and parts.fragment == ""


@given(st.text())
def test_any_value_stays_inside_its_path_segment(value: str) -> None:
    url = templates.parse("https://api.example.com/v1/{item.v}/x").render(
        {"item": {"v": value or "_"}}, quote_values=True
    )
    parts = urlsplit(url)
    assert parts.hostname == "api.example.com"
    assert parts.path.count("/") == 3 and not parts.query and not parts.fragment


def test_header_line_breaks_are_refused() -> None:
    with pytest.raises(ValueError, match="contains a line break"):
        templates.render_header("{region.id}", {"region": {"id": "x\r\nX-Evil: 1"}})


def test_render_value_walks_json() -> None:
    body = {"q": "{region.id}", "n": [1, "{run.id}"], "keep": 3}
    assert templates.render_value(body, CTX) == {"q": "r1", "n": [1, "run-1"], "keep": 3}

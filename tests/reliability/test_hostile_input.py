"""Hostile configs and items: no crash, no host change, no header injection; the canonical hash is stable."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from pullctl.canonical import canonical_json
from pullctl.config.loader import load_text
from pullctl.config.models import SourceConfig
from pullctl.pipeline.documents import content_hash
from pullctl.run.plan import Planner, plan_items
from pullctl.run.windows import Window

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)

CONFIG = SourceConfig.model_validate(
    {
        "source_id": "hostile",
        "ingestion": {
            "schedule": "@daily",
            "request": {
                "base_url": "https://api.example.com/v1/{it.id}/data",
                "parameters": {"q": "{it.q}"},
                "headers": {"X-Region": "{it.h}"},
            },
            "iteration": {"foreach": "it", "items": [{"id": "x"}], "key": "id"},
        },
    }
)
WINDOW = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))


@settings(max_examples=300)
@given(st.text(min_size=1), st.text(), st.text())
def test_items_never_change_the_host_or_inject_headers(ident: str, q: str, h: str) -> None:
    plan = plan_items(Planner(CONFIG, WINDOW, "run"), [{"id": ident, "q": q, "h": h}])
    for task in plan.tasks:
        parts = urlsplit(task.url)
        assert (parts.scheme, parts.hostname, parts.query, parts.fragment) == (
            "https",
            "api.example.com",
            "",
            "",
        )
        assert parts.path.startswith("/v1/") and parts.path.endswith("/data") and parts.path.count("/") == 3
        assert "\r" not in task.headers["X-Region"] and "\n" not in task.headers["X-Region"]
        assert task.headers["X-Region"].isascii()  # httpx sends ASCII only
    for _, reason in plan.skipped:
        assert reason in (
            "header value from '{it.h}' contains a line break",
            "header value from '{it.h}' holds a character outside ASCII; a header carries ASCII",
        )


def test_known_hostile_items() -> None:
    items = [{"id": i, "q": "a&b=c", "h": "ok"} for i in ("../../admin", "@evil.example", "%2F", "x?y=1#z")]
    items.append({"id": "crlf", "q": "", "h": "v\r\nX-Injected: 1"})
    plan = plan_items(Planner(CONFIG, WINDOW, "run"), items)
    assert [t.url for t in plan.tasks] == [
        "https://api.example.com/v1/..%2F..%2Fadmin/data",
        "https://api.example.com/v1/%40evil.example/data",
        "https://api.example.com/v1/%252F/data",
        "https://api.example.com/v1/x%3Fy%3D1%23z/data",
    ]
    assert plan.skipped == [("crlf", "header value from '{it.h}' contains a line break")]


@given(json_values)
def test_canonical_hash_ignores_key_order(value: object) -> None:
    shuffled = json.loads(json.dumps(value))
    if isinstance(shuffled, dict):
        shuffled = dict(reversed(list(shuffled.items())))
    assert content_hash(value, []) == content_hash(shuffled, [])
    assert json.loads(canonical_json(value)) == value


@given(st.dictionaries(st.text(max_size=5), json_values, max_size=5), json_values)
def test_ignored_fields_do_not_change_the_hash(doc: dict[str, object], noise: object) -> None:
    assert content_hash({**doc, "generated": noise}, ["generated"]) == content_hash(doc, [])


@settings(max_examples=100)
@given(
    st.integers(min_value=10**20),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=30),
)
def test_huge_numbers_and_unicode_in_configs_are_located_errors(big: int, name: str) -> None:
    text = f"source_id: {json.dumps(name, ensure_ascii=False)}\ningestion:\n  schedule: '@daily'\n  request: {{base_url: 'https://x/'}}\n  retry: {{max_attempts: {big}}}\n"
    result = load_text(text, "h.yaml")
    assert not result.sources
    assert any(i.path == "ingestion.retry.max_attempts" for i in result.errors)


def test_deeply_nested_yaml_is_an_error_not_a_crash() -> None:
    deep = "source_id: x\ningestion:\n  request:\n    body: " + "[" * 5000 + "]" * 5000 + "\n"
    result = load_text(deep, "deep.yaml")
    assert result.errors and not result.sources

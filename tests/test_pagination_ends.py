"""Where an item's pages end (SOURCES.md §4): ``pullctl run`` against servers that fool a naive paginator.

Each test states the contract end to end: the exit code, the run record, and the stored pages, whose
records must be exactly ids 1..N (none missing, none twice). Nothing may be lost silently: a capped page
size is not the end, a path that does not resolve fails the item, a repeating page or cursor is a
``pagination loop`` found within a page or two, never a run to ``max_pages``.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli
from tests.runkit import Runner, write_source
from tests.servers.upstream import Upstream, make_records

SOURCE = "pages"


@pytest.fixture
def runner(cli: Cli, tmp_path: Path) -> Runner:
    return Runner(cli, tmp_path)


def write_pages(
    runner: Runner, upstream: Upstream, endpoint: str, pagination: dict[str, Any], **params: Any
) -> Path:
    """A source over ``endpoint`` of the test upstream with ``pagination`` and query ``params``; one attempt
    per request, so that a request count is a page count."""
    return write_source(
        runner.config,
        SOURCE,
        request={"base_url": f"{upstream.url}{endpoint}", "parameters": params},
        pagination=pagination,
        retry={"max_attempts": 1},
    )


def run_pages(
    runner: Runner, upstream: Upstream, endpoint: str, pagination: dict[str, Any], **params: Any
) -> tuple[int, dict[str, Any], list[int]]:
    """Run the source of ``write_pages``: (exit code, run record, the ids of every stored page's records,
    read at the pagination's records path, in the order stored)."""
    write_pages(runner, upstream, endpoint, pagination, **params)
    code, [record], _ = runner.run_json(SOURCE)
    key = pagination.get("stop_when_empty_path")
    ids = []
    for doc in runner.documents(SOURCE):
        content = doc["content"]
        found = content.get(key, []) if isinstance(content, dict) and key else content
        ids += [r["id"] for r in found]
    return code, record, ids


def assert_exactly(ids: list[int], n: int) -> None:
    """``ids`` are 1..n, each once."""
    counts = Counter(ids)
    missing = [i for i in range(1, n + 1) if i not in counts]
    twice = sorted(i for i, c in counts.items() if c > 1)
    extra = sorted(i for i in counts if not 1 <= i <= n)
    assert (len(missing), twice, extra) == (0, [], []), (
        f"{len(missing)} of {n} missing (first {missing[:5]}), stored twice {twice[:5]}, unexpected {extra[:5]}"
    )


def assert_succeeded(code: int, record: dict[str, Any]) -> None:
    assert (code, record["status"], record["errors"]) == (0, "succeeded", [])


def assert_only_item_failed(code: int, record: dict[str, Any]) -> str:
    """The run's one item failed: exit 1, status failed; returns its error message."""
    assert (code, record["status"]) == (1, "failed"), record["errors"]
    assert record["counts"]["failed"] == 1
    [error] = record["errors"]
    message: str = error["message"]
    return message


# -- a page shorter than asked for is not the end: servers cap page sizes -----------------------------------


def test_capped_offset_pages_advance_by_what_came(runner: Runner, upstream: Upstream) -> None:
    upstream.records = make_records(237)
    upstream.max_rows = 20  # PostgREST db-max-rows: 20 records whatever limit=100 asks
    pagination = {"type": "offset", "limit": 100, "stop_when_empty_path": "data"}
    code, record, ids = run_pages(runner, upstream, "/pages/capped-offset", pagination)
    assert_succeeded(code, record)
    assert_exactly(ids, 237)
    offsets = [int(r.query["offset"]) for r in upstream.requests]
    assert offsets == list(range(0, 237, 20))  # by the records received, not by the limit
    # 11 pages of 20, then 17: shorter than the longest page seen, so the end without a 13th request


def test_capped_page_number_pages_go_on_past_a_short_page(runner: Runner, upstream: Upstream) -> None:
    upstream.records = make_records(237)
    upstream.max_rows = 20  # GitHub caps per_page the same way (at 100)
    pagination = {
        "type": "page_number",
        "page_size_param": "per_page",
        "page_size": 100,
        "stop_when_empty_path": "data",
    }
    code, record, ids = run_pages(runner, upstream, "/pages/capped-page-number", pagination)
    assert_succeeded(code, record)
    assert_exactly(ids, 237)
    assert upstream.count("/pages/capped-page-number") == 12  # 11 of 20, then 17 < 20: the end


# -- paths ----------------------------------------------------------------------------------------------------


def test_records_path_absent_from_the_page_fails_the_item(runner: Runner, upstream: Upstream) -> None:
    pagination = {"type": "offset", "limit": 10, "stop_when_empty_path": "data"}
    code, record, ids = run_pages(runner, upstream, "/pages/bare-offset", pagination)
    message = assert_only_item_failed(code, record)
    assert "'data'" in message
    assert "list" in message  # what the page holds instead
    assert ids == []
    assert runner.documents(SOURCE) == []  # never read as an empty page, never stored as one


def test_json_pointer_reads_a_key_with_a_dot(runner: Runner, upstream: Upstream) -> None:
    pagination = {"type": "next_url", "next_url_path": "/@odata.nextLink", "stop_when_empty_path": "value"}
    code, record, ids = run_pages(runner, upstream, "/pages/odata", pagination)
    assert_succeeded(code, record)
    assert_exactly(ids, 23)
    assert upstream.count("/pages/odata") == 3


def test_last_element_path_gives_the_stripe_cursor(runner: Runner, upstream: Upstream) -> None:
    pagination = {
        "type": "cursor",
        "cursor_param": "starting_after",
        "cursor_path": "data.-1.id",
        "stop_when_empty_path": "data",
    }
    code, record, ids = run_pages(runner, upstream, "/pages/stripe", pagination, limit=10)
    assert_succeeded(code, record)
    assert_exactly(ids, 23)
    assert [r.query.get("starting_after") for r in upstream.requests][:3] == [None, "10", "20"]


@pytest.mark.parametrize(
    ("field", "pagination"),
    [
        ("cursor_path", {"type": "cursor", "cursor_path": "data..id"}),
        ("next_url_path", {"type": "next_url", "next_url_path": "/a~2b"}),  # ~ is only ~0 or ~1
        ("stop_when_empty_path", {"type": "offset", "stop_when_empty_path": ""}),
    ],
)
def test_malformed_paths_are_located_validation_errors(
    runner: Runner, upstream: Upstream, field: str, pagination: dict[str, Any]
) -> None:
    path = write_pages(runner, upstream, "/pages/offset", pagination)
    result = runner("validate", str(path))
    assert result.exit_code == 2, result.stdout
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if f"{field}:" in text)
    located = re.compile(rf"^{re.escape(str(path))}:(\d+):\d+: ingestion\.pagination\.{field}: .+")
    errors = [text for text in result.stdout.splitlines() if not text.endswith("(warning)")]
    found = [m for m in map(located.match, errors) if m]
    assert found, result.stdout
    assert int(found[0].group(1)) == line


# -- servers that repeat themselves: a loop fails the item at once --------------------------------------------

REPEAT_LAST = {
    "type": "page_number",
    "page_size_param": "per_page",
    "page_size": 10,
    "stop_when_empty_path": "data",
}


def test_repeat_last_ends_at_a_page_shorter_than_the_longest(runner: Runner, upstream: Upstream) -> None:
    # 10, 10, 3: the third page is shorter than the longest seen, so the item ends there, nothing lost
    code, record, ids = run_pages(runner, upstream, "/pages/repeat-last", REPEAT_LAST)
    assert_succeeded(code, record)
    assert_exactly(ids, 23)
    assert upstream.count("/pages/repeat-last") == 3


def test_repeat_last_full_page_repeated_is_a_pagination_loop(runner: Runner, upstream: Upstream) -> None:
    upstream.records = make_records(30)  # 10, 10, 10, then page 4 holds page 3's records again
    code, record, _ = run_pages(runner, upstream, "/pages/repeat-last", REPEAT_LAST)
    message = assert_only_item_failed(code, record)
    assert "pagination loop" in message
    assert "max_pages" not in message
    assert upstream.count("/pages/repeat-last") <= 5


def test_stuck_cursor_is_a_pagination_loop(runner: Runner, upstream: Upstream) -> None:
    pagination = {"type": "cursor", "cursor_path": "next_cursor", "stop_when_empty_path": "data"}
    code, record, _ = run_pages(runner, upstream, "/pages/stuck-cursor", pagination)
    message = assert_only_item_failed(code, record)
    assert "pagination loop" in message
    assert "abc" in message  # the cursor that came back twice
    assert upstream.count("/pages/stuck-cursor") <= 3


def test_server_ignoring_the_page_parameter_is_a_pagination_loop(runner: Runner, upstream: Upstream) -> None:
    pagination = {"type": "page_number", "stop_when_empty_path": "data"}
    code, record, _ = run_pages(runner, upstream, "/pages/ignores-page", pagination)
    message = assert_only_item_failed(code, record)
    assert "pagination loop" in message
    assert upstream.count("/pages/ignores-page") <= 3

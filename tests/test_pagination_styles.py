"""Every pagination style real APIs use (SOURCES.md §4), end to end against the loopback upstream: where the
cursor comes from (body, header, last record), where it goes (query, body, header), has_more, GraphQL's
pageInfo, initial cursors and first-page-only filters. Each run must store ids 1..23 exactly once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli
from tests.runkit import Runner, write_source
from tests.servers.upstream import Upstream


@pytest.fixture
def runner(cli: Cli, tmp_path: Path) -> Runner:
    return Runner(cli, tmp_path)


def run(
    runner: Runner, upstream: Upstream, request: dict[str, Any], **ingestion: Any
) -> tuple[int, dict[str, Any], list[int]]:
    """Run a source over the test upstream; (exit code, run record, ids of the stored records)."""
    write_source(
        runner.config,
        "styles",
        request={**request, "base_url": f"{upstream.url}{request['base_url']}"},
        records={**ingestion.pop("records", {}), "split": True},
        retry={"max_attempts": 1},
        **ingestion,
    )
    code, [record], _ = runner.run_json("styles")
    return code, record, sorted(d["content"]["id"] for d in runner.documents("styles"))


def test_stripe_has_more_and_the_last_records_id(runner: Runner, upstream: Upstream) -> None:
    pagination = {
        "type": "cursor",
        "cursor_from": "last_record",
        "cursor_path": "id",
        "cursor_param": "starting_after",
        "has_more_path": "has_more",
    }
    code, record, ids = run(
        runner,
        upstream,
        {"base_url": "/pages/stripe", "parameters": {"limit": 10}},
        records={"path": "data"},
        pagination=pagination,
    )
    assert (code, ids) == (0, list(range(1, 24)))
    assert record["counts"]["requests"] == 3  # has_more false on page 3: no empty page 4 asked for


def test_notion_body_cursor_stops_on_has_more_false_despite_a_cursor(
    runner: Runner, upstream: Upstream
) -> None:
    pagination = {
        "type": "cursor",
        "cursor_path": "next_cursor",
        "cursor_param": "start_cursor",
        "inject": "body",
        "body_path": "start_cursor",
        "has_more_path": "has_more",
    }
    request = {"base_url": "/pages/notion", "method": "POST", "body": {"page_size": 10}}
    code, record, ids = run(runner, upstream, request, records={"path": "results"}, pagination=pagination)
    assert (code, ids, record["counts"]["requests"]) == (0, list(range(1, 24)), 3)
    bodies = [body for path, body in upstream.bodies if path == "/pages/notion"]
    assert bodies[0] == {"page_size": 10}  # no cursor yet: left out, never sent as null
    assert set(bodies[1]) == {"page_size", "start_cursor"}


def test_graphql_page_info(runner: Runner, upstream: Upstream) -> None:
    request = {
        "base_url": "/graphql",
        "graphql": {
            "query": "query($after: String, $first: Int) { search(first: $first, after: $after) { nodes { id } pageInfo { endCursor hasNextPage } } }",
            "variables": {"first": 10, "after": None},
        },
    }
    pagination = {
        "type": "cursor",
        "inject": "body",
        "body_path": "variables.after",
        "cursor_path": "data.search.pageInfo.endCursor",
        "has_more_path": "data.search.pageInfo.hasNextPage",
    }
    code, _, ids = run(
        runner, upstream, request, records={"path": "data.search.nodes"}, pagination=pagination
    )
    assert (code, ids) == (0, list(range(1, 24)))
    sent = [body for path, body in upstream.bodies if path == "/graphql"]
    assert sent[0]["query"] == request["graphql"]["query"]  # as written: its braces are GraphQL's
    # no cursor yet: 'after' is left out (GraphQL reads an absent variable as null), never sent as null
    assert sent[0]["variables"] == {"first": 10} and sent[1]["variables"]["after"]


def test_a_cursor_in_a_response_header(runner: Runner, upstream: Upstream) -> None:
    pagination = {"type": "cursor", "cursor_from": "header", "cursor_header": "X-Next-Cursor"}
    code, _, ids = run(runner, upstream, {"base_url": "/pages/header-cursor"}, pagination=pagination)
    assert (code, ids) == (0, list(range(1, 24)))


def test_a_cursor_sent_as_a_header(runner: Runner, upstream: Upstream) -> None:
    pagination = {
        "type": "cursor",
        "cursor_path": "next_cursor",
        "inject": "header",
        "cursor_param": "X-Cursor",
        "initial_cursor": "start",
    }
    code, _, ids = run(
        runner, upstream, {"base_url": "/pages/needs-cursor"}, records={"path": "data"}, pagination=pagination
    )
    assert (code, ids) == (0, list(range(1, 24)))
    assert upstream.requests[0].headers["x-cursor"] == "start"
    assert all("cursor" not in r.query for r in upstream.requests)


def test_an_api_that_needs_an_initial_cursor(runner: Runner, upstream: Upstream) -> None:
    pagination = {"type": "cursor", "cursor_path": "next_cursor", "initial_cursor": "start"}
    code, _, ids = run(
        runner, upstream, {"base_url": "/pages/needs-cursor"}, records={"path": "data"}, pagination=pagination
    )
    assert (code, ids) == (0, list(range(1, 24)))
    assert upstream.requests[0].query["cursor"] == "start"


def test_first_page_only_filters(runner: Runner, upstream: Upstream) -> None:
    pagination = {"type": "cursor", "cursor_path": "next_cursor", "first_page_only": ["status"]}
    request = {"base_url": "/pages/filtered", "parameters": {"status": "open"}}
    code, _, ids = run(runner, upstream, request, records={"path": "data"}, pagination=pagination)
    assert (code, ids) == (0, list(range(1, 24)))
    assert [("status" in r.query, "cursor" in r.query) for r in upstream.requests] == [
        (True, False),
        (False, True),
        (False, True),
    ]


def test_has_more_true_without_a_cursor_fails_the_item(runner: Runner, upstream: Upstream) -> None:
    pagination = {
        "type": "cursor",
        "cursor_path": "no_such_cursor",
        "has_more_path": "has_more",
        "cursor_param": "start_cursor",
    }
    request = {"base_url": "/pages/notion", "method": "POST", "body": {}}
    code, record, ids = run(runner, upstream, request, records={"path": "results"}, pagination=pagination)
    assert code == 1 and ids == list(range(1, 11))  # the first page is kept
    assert record["errors"][0]["message"] == (
        "page 1 says more pages follow (has_more is true), but it has no next cursor"
    )


def test_raw_parameters_are_sent_as_written(runner: Runner, upstream: Upstream) -> None:
    write_source(
        runner.config,
        "raw",
        request={
            "base_url": f"{upstream.url}/echo",
            "parameters": {"q": "a b"},
            "raw_parameters": {"search": "(status:(values:List(ACTIVE)))"},
        },
    )
    code, _, _ = runner.run_json("raw")
    assert code == 0
    [doc] = runner.documents("raw")
    assert doc["request"]["url"].endswith("/echo?q=a+b&search=(status:(values:List(ACTIVE)))")


@pytest.mark.parametrize(
    ("pagination", "expected"),
    [
        (
            {"type": "cursor", "cursor_from": "header"},
            "ingestion.pagination.cursor_header: required with cursor_from: header: the header that holds it",
        ),
        (
            {"type": "cursor", "cursor_path": "c", "inject": "body"},
            "ingestion.pagination.body_path: required with inject: body: where in the JSON body the value goes",
        ),
        (
            {"type": "cursor", "cursor_path": "c", "inject": "body", "body_path": "after"},
            "ingestion.pagination.inject: inject: body needs method: POST (or request.graphql)",
        ),
        (
            {"type": "next_url", "next_url_path": "next", "inject": "body"},
            "ingestion.pagination.inject: applies to pagination types page_number or offset or cursor, not next_url",
        ),
    ],
)
def test_style_fields_are_validated(runner: Runner, pagination: dict[str, Any], expected: str) -> None:
    write_source(
        runner.config, "bad", request={"base_url": "https://api.example.com/x"}, pagination=pagination
    )
    result = runner("validate", str(runner.config))
    assert result.exit_code == 2
    assert [line.split(": ", 1)[1] for line in result.stdout.splitlines() if ": ingestion." in line] == [
        expected
    ]


def test_the_offset_inside_a_parameter_value(runner: Runner, upstream: Upstream) -> None:
    # {page.offset} in a value: the paginator injects nothing itself, it only advances the value
    request = {"base_url": "/pages/limit-pair", "parameters": {"limit": "{page.offset},10"}}
    pagination = {"type": "offset", "limit": 10}
    code, _, ids = run(runner, upstream, request, records={"path": "data"}, pagination=pagination)
    assert (code, ids) == (0, list(range(1, 24)))
    assert [r.query["limit"] for r in upstream.requests] == ["0,10", "10,10", "20,10"]


def test_a_page_template_in_the_url_is_refused(runner: Runner) -> None:
    write_source(
        runner.config,
        "bad",
        request={"base_url": "https://api.example.com/p/{page.number}"},
        pagination={"type": "page_number"},
    )
    result = runner("validate", str(runner.config))
    assert result.exit_code == 2 and (
        "ingestion.request.base_url: template '{page.number}': page templates go in request.parameters, headers"
        " or body, where the paginator advances them" in result.stdout
    )

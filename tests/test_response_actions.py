"""What a response means (SOURCES.md §5): response_actions against the loopback upstream, checked before the
retry policy: errors in 200 bodies (retried or failed, with the API's own message), skip on 404, end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli
from tests.runkit import Runner, write_source
from tests.servers.upstream import Upstream

ITEMS = [{"id": "a", "n": 1}, {"id": "b", "n": 2}, {"id": "c", "n": 3}]


@pytest.fixture
def runner(cli: Cli, tmp_path: Path) -> Runner:
    return Runner(cli, tmp_path)


def run(
    runner: Runner, upstream: Upstream, actions: list[dict[str, Any]], **ingestion: Any
) -> tuple[int, dict[str, Any]]:
    write_source(
        runner.config,
        "acts",
        request={"base_url": f"{upstream.url}/echo", "parameters": {"item": "{it.id}"}},
        iteration={"foreach": "it", "items": ITEMS, "key": "id"},
        response_actions=actions,
        retry={"max_attempts": 3, "initial_delay_seconds": 0.01, "max_delay_seconds": 0.02},
        **ingestion,
    )
    code, [record], _ = runner.run_json("acts")
    return code, record


def test_skip_on_404_counts_the_item_as_skipped_not_failed(runner: Runner, upstream: Upstream) -> None:
    upstream.fail("/echo", "status", status=404, query={"item": "b"})
    code, record = run(runner, upstream, [{"status": [403, 404], "action": "skip"}])
    assert (code, record["status"]) == (0, "succeeded")
    c = record["counts"]
    assert (c["fetched"], c["failed"], c["skipped"], c["stored"]) == (2, 0, 1, 2)
    [error] = record["errors"]
    assert error["item"] == "b" and error["message"].startswith("skipped: HTTP 404 Not Found from ")
    assert error["message"].endswith('"reason": "injected 404"} (response_actions[0]: skip)')


def test_an_error_in_a_200_body_fails_the_item_with_the_apis_message(
    runner: Runner, upstream: Upstream
) -> None:
    upstream.fail(
        "/echo", "json", body={"code": 40100, "message": "Access token is expired"}, query={"item": "a"}
    )
    rules = [
        {"status": 200, "body_path": "code", "exists": True, "action": "fail", "message_path": "message"}
    ]
    code, record = run(runner, upstream, rules)
    assert code == 3 and record["failed_items"] == ["a"]
    message = record["errors"][0]["message"]
    assert (
        message.endswith(": Access token is expired (response_actions[0]: fail)")
        and "HTTP 200 OK from" in message
    )
    assert record["errors"][0]["attempts"] == 1  # a fail is final: no retries
    assert upstream.count("/echo", item="a") == 1


def test_a_body_that_says_retry_is_retried_then_succeeds(runner: Runner, upstream: Upstream) -> None:
    upstream.fail("/echo", "json", body={"error": {"code": "RATE_LIMITED"}}, query={"item": "c"}, times=2)
    rules = [{"status": 200, "body_path": "error.code", "in": ["RATE_LIMITED"], "action": "retry"}]
    code, record = run(runner, upstream, rules)
    assert code == 0 and record["counts"]["retries"] == 2 and record["counts"]["stored"] == 3
    assert upstream.count("/echo", item="c") == 3


def test_retry_gives_up_after_the_policys_attempts(runner: Runner, upstream: Upstream) -> None:
    upstream.fail("/echo", "json", body={"error": {"code": "RATE_LIMITED"}}, query={"item": "c"})
    rules = [{"body_path": "error.code", "equals": "RATE_LIMITED", "action": "retry"}]
    code, record = run(runner, upstream, rules)
    assert code == 3 and record["errors"][0]["message"].endswith(
        "(response_actions[0]: retry) (gave up after 3 attempts)"
    )


def test_end_stops_an_items_pages_without_storing_the_response(runner: Runner, upstream: Upstream) -> None:
    upstream.fail(
        "/pages/page-number", "json", status=400, body={"error": "beyond the 300th page"}, query={"page": "2"}
    )
    write_source(
        runner.config,
        "paged",
        request={"base_url": f"{upstream.url}/pages/page-number", "parameters": {"per_page": 10}},
        records={"path": "data"},
        pagination={"type": "page_number"},
        response_actions=[{"status": 400, "body_contains": "beyond the 300th page", "action": "end"}],
    )
    code, [record], _ = runner.run_json("paged")
    assert (code, record["status"], record["counts"]["stored"], record["counts"]["requests"]) == (
        0,
        "succeeded",
        1,
        2,
    )


def test_values_compare_as_json_and_headers_as_text(runner: Runner, upstream: Upstream) -> None:
    upstream.fail(
        "/echo", "json", body={"code": "40100"}, query={"item": "a"}
    )  # a string: the number rule misses
    upstream.fail("/echo", "json", body={"code": 40100}, query={"item": "b"})
    rules = [{"body_path": "code", "equals": 40100, "action": "skip"}]
    code, record = run(runner, upstream, rules)
    assert code == 0 and [e["item"] for e in record["errors"]] == ["b"]
    rules = [{"header": "content-type", "in": ["application/json"], "action": "skip"}]
    code, record = run(runner, upstream, rules)
    assert record["counts"]["skipped"] == 3  # /echo answers application/json


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            {"action": "skip"},
            "ingestion.response_actions[0].action: a rule needs a status or a condition (body_path, body_contains, header)",
        ),
        (
            {"body_path": "code", "action": "fail"},
            "ingestion.response_actions[0].body_path: takes exactly one of equals, in, not_in, exists",
        ),
        (
            {"header": "x", "not_in": [1], "action": "fail"},
            "ingestion.response_actions[0].header: takes exactly one of equals, in",
        ),
        (
            {"status": 200, "equals": 1, "action": "fail"},
            "ingestion.response_actions[0].equals: needs body_path or header: what it compares",
        ),
        (
            {"body_contains": "x", "header": "h", "equals": "y", "action": "end"},
            "ingestion.response_actions[0].header: a rule has one condition besides status, not body_contains and header",
        ),
        (
            {"status": 404, "action": "ignore"},
            "ingestion.response_actions[0].action: must be 'retry', 'fail', 'skip' or 'end' (got 'ignore')",
        ),
    ],
)
def test_rules_are_validated(runner: Runner, rule: dict[str, Any], expected: str) -> None:
    write_source(
        runner.config, "bad", request={"base_url": "https://api.example.com/x"}, response_actions=[rule]
    )
    result = runner("validate", str(runner.config))
    assert result.exit_code == 2
    assert [line.split(": ", 1)[1] for line in result.stdout.splitlines() if ": ingestion." in line] == [
        expected
    ]


def limited(runner: Runner, upstream: Upstream, items: int, concurrency: int) -> tuple[int, dict[str, Any]]:
    write_source(
        runner.config,
        "limited",
        request={"base_url": f"{upstream.url}/limited", "parameters": {"item": "{it.id}"}},
        iteration={
            "foreach": "it",
            "items": [{"id": f"i{n}"} for n in range(items)],
            "concurrency": concurrency,
        },
        rate_limit={
            "remaining_header": "X-RateLimit-Remaining",
            "reset_header": "X-RateLimit-Reset",
            "min_remaining": 0,
        },
        retry={"max_attempts": 3, "initial_delay_seconds": 0.01},
    )
    code, [record], log = runner.run_json("limited")
    record["log"] = log
    return code, record


def test_a_spent_budget_pauses_every_worker_until_the_reset(runner: Runner, upstream: Upstream) -> None:
    upstream.rate_budget, upstream.rate_window = 3, 1.0
    code, record = limited(runner, upstream, items=7, concurrency=2)
    assert (code, record["counts"]["fetched"], record["counts"]["failed"]) == (0, 7, 0)
    assert upstream.rate_windows >= 3  # 7 requests, 3 a window: the run waited for two resets
    waits = [json.loads(line) for line in record["log"].splitlines() if '"rate_limit_wait"' in line]
    assert waits and waits[0]["message"].startswith(
        "rate limit: X-RateLimit-Remaining is 0; every worker waits"
    )


def test_a_reset_hours_away_fails_the_remaining_items_with_one_reason(
    runner: Runner, upstream: Upstream
) -> None:
    upstream.rate_budget, upstream.rate_reset_ahead = 2, 7200
    code, record = limited(runner, upstream, items=5, concurrency=1)
    assert code == 3 and record["counts"]["fetched"] == 2 and record["failed_items"] == ["i2", "i3", "i4"]
    reasons = {e["message"] for e in record["errors"]}
    assert reasons == {
        "rate limit spent: X-RateLimit-Remaining is 0 and X-RateLimit-Reset is 7200 s away (above"
        " max_retry_after_seconds=300)"
    }
    assert upstream.count("/limited") == 2  # nothing was sent once the budget was known to be spent

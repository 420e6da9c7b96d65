"""Upstream faults against the real test upstream: per fault, the item's outcome, the attempts, the exit code,
and that a recoverable item ends stored exactly once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli
from tests.runkit import Runner, write_source
from tests.servers.upstream import Upstream, http_date

ONE_ITEM = {"foreach": "spot", "items": [{"id": "s1", "lat": 52.52, "lon": 13.41}], "key": "id"}


def _source(runner: Runner, upstream: Upstream, **request: Any) -> None:
    retry = request.pop("retry", {})
    write_source(
        runner.config,
        "faulty",
        request={
            "base_url": f"{upstream.url}/v1/forecast",
            "parameters": {"latitude": "{spot.lat}", "longitude": "{spot.lon}", "hourly": "temperature_2m"},
            "timeout_seconds": 1.5,
            **request,
        },
        iteration=ONE_ITEM,
        retry={"max_attempts": 3, "initial_delay_seconds": 0.05, "max_delay_seconds": 2, **retry},
        dedup={"ignore_fields": ["generationtime_ms"]},
    )


# (id, fail() arguments, request overrides, exit code, attempts, message start or None when stored)
FAULTS: list[tuple[str, dict[str, Any], dict[str, Any], int, int, str | None]] = [
    (
        "429-retry-after-seconds",
        {"kind": "status", "status": 429, "retry_after": 1, "times": 1},
        {},
        0,
        2,
        None,
    ),
    (
        "429-retry-after-date",
        {"kind": "status", "status": 429, "retry_after": "DATE", "times": 1},
        {},
        0,
        2,
        None,
    ),
    (
        "429-retry-after-zero",
        {"kind": "status", "status": 429, "retry_after": "0", "times": 2},
        {},
        0,
        3,
        None,
    ),
    (
        "429-retry-after-above-cap",
        {"kind": "status", "status": 429, "retry_after": 3600},
        {},
        1,
        1,
        "rate limited for 3600 s (Retry-After above max_retry_after_seconds=300)",
    ),
    ("503-burst-recovers", {"kind": "status", "status": 503, "times": 2}, {}, 0, 3, None),
    ("503-burst-too-long", {"kind": "status", "status": 503}, {}, 1, 3, "HTTP 503 Service Unavailable from "),
    ("read-timeout", {"kind": "delay", "delay": 5, "times": 1}, {}, 0, 2, None),
    (
        "trickling-body",
        {"kind": "trickle", "chunk_size": 64, "interval": 0.3},
        {"retry": {"max_attempts": 2}},
        1,
        2,
        "timed out after 1.5 s (timeout_seconds) waiting for 127.0.0.1:",
    ),
    ("reset-mid-body", {"kind": "reset", "after_bytes": 50, "times": 1}, {}, 0, 2, None),
    ("truncated-json", {"kind": "truncated_json"}, {}, 1, 1, "response from "),
    ("non-json", {"kind": "html"}, {}, 1, 1, "response from "),
    ("empty-body", {"kind": "empty"}, {}, 1, 1, "empty response body from "),
    (
        "over-max-response-bytes",
        {"kind": "large", "size": 4096},
        {"max_response_bytes": 2048},
        1,
        1,
        "response of 4096 bytes is larger than max_response_bytes=2048",
    ),
    (
        "over-max-response-bytes-chunked",
        {"kind": "large", "size": 4096, "chunked": True},
        {"max_response_bytes": 2048},
        1,
        1,
        "response is larger than max_response_bytes=2048",
    ),
    ("redirect-loop", {"kind": "redirect_loop"}, {}, 1, 1, "redirect loop: more than 5 redirects"),
]


@pytest.mark.parametrize(
    ("fault", "request_cfg", "code", "attempts", "message"),
    [f[1:] for f in FAULTS],
    ids=[f[0] for f in FAULTS],
)
def test_fault(
    cli: Cli,
    tmp_path: Path,
    upstream: Upstream,
    fault: dict[str, Any],
    request_cfg: dict[str, Any],
    code: int,
    attempts: int,
    message: str | None,
) -> None:
    runner = Runner(cli, tmp_path)
    _source(runner, upstream, **request_cfg)
    if fault.get("retry_after") == "DATE":
        fault = {**fault, "retry_after": http_date(1)}
    upstream.fail("/v1/forecast", **fault)
    exit_code, [record], _ = runner.run_json("faulty")
    assert exit_code == code, record["errors"]
    assert record["counts"]["requests"] == attempts
    if message is None:
        assert record["counts"]["stored"] == 1 and len(runner.documents("faulty")) == 1
        # the rerun finds the same content: stored exactly once
        _, [again], _ = runner.run_json("faulty")
        assert again["counts"]["duplicates"] == 1 and len(runner.documents("faulty")) == 1
    else:
        [error] = record["errors"]
        assert error["message"].startswith(message), error
        assert error["attempts"] == attempts and record["failed_items"] == ["s1"]
        assert not runner.db.exists() or runner.documents("faulty") == []


def test_connect_refused(cli: Cli, tmp_path: Path) -> None:
    runner = Runner(cli, tmp_path)
    write_source(
        runner.config,
        "down",
        request={"base_url": "http://127.0.0.1:9/v1"},
        retry={"max_attempts": 2, "initial_delay_seconds": 0.01},
    )
    code, [record], _ = runner.run_json("down")
    assert code == 1 and record["counts"]["requests"] == 2
    assert record["errors"][0]["message"].endswith("(gave up after 2 attempts)")


def test_empty_list_page_is_not_stored(cli: Cli, tmp_path: Path, upstream: Upstream) -> None:
    runner = Runner(cli, tmp_path)
    write_source(
        runner.config,
        "empty",
        request={"base_url": f"{upstream.url}/pages/empty"},
        pagination={"type": "none", "stop_when_empty_path": "data"},
    )
    code, [record], _ = runner.run_json("empty")
    assert code == 0 and record["counts"]["fetched"] == 1 and record["counts"]["stored"] == 0

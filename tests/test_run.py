"""`pullctl run` end to end: the real test upstream, the real MCP server, the DAPR emulator, SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.emulators.dapr import DaprEmulator
from tests.runkit import Runner, weather, write_source
from tests.servers.mcp_server import McpTestServer
from tests.servers.upstream import Upstream


@pytest.fixture
def runner(cli: Cli, tmp_path: Path, mcp_server: McpTestServer) -> Runner:
    return Runner(cli, tmp_path, {"PULLCTL_MCP_URL_PLANTATION_MCP": mcp_server.url})


def test_weather_run_stores_one_document_per_region_then_only_duplicates(
    runner: Runner, upstream: Upstream, mcp_server: McpTestServer
) -> None:
    write_source(runner.config, **weather(upstream.url))
    code, [record], _ = runner.run_json("weather-api")
    assert code == 0
    assert record["status"] == "succeeded"
    assert record["counts"] == {
        "items": 5,
        "fetched": 5,
        "stored": 5,
        "duplicates": 0,
        "failed": 0,
        "skipped": 0,
        "pages": 5,
        "requests": 5,
        "retries": 0,
        "parent_requests": 0,
    }
    docs = runner.documents()
    assert sorted(d["linkage"]["region_id"] for d in docs) == ["r1", "r2", "r3", "r4", "r5"]
    r1 = next(d for d in docs if d["linkage"]["region_id"] == "r1")
    assert r1["linkage"] == {k: v for k, v in mcp_server.regions[0].items()}
    assert r1["content"]["latitude"] == mcp_server.regions[0]["latitude"]
    assert r1["request"]["status"] == 200 and r1["request"]["page"] == 1
    assert r1["window"] == record["window"] and r1["run_id"] == record["run_id"]
    assert r1["event_status"] == "none"

    code, [again], _ = runner.run_json("weather-api")
    assert code == 0
    assert (again["counts"]["stored"], again["counts"]["duplicates"]) == (0, 5)
    assert len(runner.documents()) == 5
    assert mcp_server.calls[-1] == ("list_active_regions", {})


def test_failed_item_makes_the_run_partial_and_is_named(
    runner: Runner, upstream: Upstream, mcp_server: McpTestServer
) -> None:
    write_source(runner.config, **weather(upstream.url))
    bad = str(mcp_server.regions[1]["latitude"])
    upstream.fail("/v1/forecast", status=503, query={"latitude": bad})
    code, [record], stderr = runner.run_json("weather-api")
    assert code == 3
    assert record["status"] == "partial"
    assert record["counts"]["failed"] == 1 and record["counts"]["stored"] == 4
    assert record["counts"]["retries"] == 2
    assert record["failed_items"] == ["r2"]
    [error] = record["errors"]
    assert error["item"] == "r2" and error["attempts"] == 3
    assert error["message"].startswith("HTTP 503 Service Unavailable from http://127.0.0.1:")
    assert error["message"].endswith("(gave up after 3 attempts)")
    failed_log = [json.loads(line) for line in stderr.splitlines() if '"item_failed"' in line]
    assert failed_log[0]["item"] == "r2" and failed_log[0]["level"] == "error"

    # the replay re-runs only r2, in the same window
    upstream.reset()
    code, [replayed], _ = runner.run_json("weather-api", "--replay", record["run_id"])
    assert code == 0
    assert replayed["counts"]["items"] == 1 and replayed["counts"]["stored"] == 1
    assert replayed["window"] == record["window"] and replayed["trigger"] == "manual"
    assert len(runner.documents()) == 5


def test_replay_errors(runner: Runner, upstream: Upstream) -> None:
    runner.env["PULLCTL_LOG_FORMAT"] = (
        "text"  # the messages as people read them (json: tests/test_json_logs.py)
    )
    write_source(runner.config, **weather(upstream.url))
    write_source(runner.config, "other", **weather(upstream.url))
    result = runner("run", "weather-api", "--replay", "nope")
    assert result.exit_code == 2
    assert result.stderr == "error: no run 'nope' in the store (see: pullctl runs weather-api)\n"
    _, [other], _ = runner.run_json("other")
    result = runner("run", "weather-api", "--replay", other["run_id"])
    assert result.stderr == f"error: run '{other['run_id']}' belongs to source 'other', not 'weather-api'\n"
    result = runner("run", "other", "--replay", other["run_id"])
    assert result.exit_code == 0
    assert f"run {other['run_id']} has no failed items: nothing to replay" in result.stderr


def test_every_item_failing_fails_the_run(runner: Runner, upstream: Upstream) -> None:
    write_source(runner.config, **weather(upstream.url, retry={"max_attempts": 1}))
    upstream.fail("/v1/forecast", status=404)
    code, [record], _ = runner.run_json("weather-api")
    assert code == 1
    assert (
        record["status"] == "failed" and record["counts"]["failed"] == 5 and record["counts"]["requests"] == 5
    )


def test_three_day_backfill_stores_each_window_once(runner: Runner, upstream: Upstream) -> None:
    ing = weather(upstream.url)
    ing["request"]["parameters"] |= {
        "start_date": "{window.start:%Y-%m-%d}",
        "end_date": "{window.start:%Y-%m-%d}",
    }
    write_source(runner.config, **ing)
    args = ("weather-api", "--from", "2026-01-01", "--to", "2026-01-04", "--step", "1d")
    code, records, _ = runner.run_json(*args)
    assert code == 0
    assert [r["window"]["start"][:10] for r in records] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert all(r["trigger"] == "backfill" and r["counts"]["stored"] == 5 for r in records)
    assert len(runner.documents()) == 15
    code, records, _ = runner.run_json(*args)
    assert [r["counts"]["duplicates"] for r in records] == [5, 5, 5]
    assert len(runner.documents()) == 15


def test_dry_run_prints_documents_and_stores_nothing(runner: Runner, upstream: Upstream) -> None:
    write_source(runner.config, **weather(upstream.url))
    result = runner("run", "weather-api", "--dry-run", "--limit", "2")
    assert result.exit_code == 0
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["item"]["region_id"] for d in docs] == ["r1", "r2"]
    assert docs[0]["content"]["hourly_units"] == {"time": "iso8601", "temperature_2m": "°C"}
    assert not runner.db.exists()


def test_only_and_set(runner: Runner, upstream: Upstream) -> None:
    write_source(runner.config, **weather(upstream.url))
    code, [record], _ = runner.run_json(
        "weather-api", "--only", "region_id=r3", "--only", "region_id=r4", "--set", "hourly=precipitation"
    )
    assert code == 0 and record["counts"]["fetched"] == 2
    assert {r.query["hourly"] for r in upstream.requests} == {"precipitation"}


def test_items_with_null_key_or_field_are_skipped(
    runner: Runner, upstream: Upstream, mcp_server: McpTestServer
) -> None:
    mcp_server.regions = [
        {"region_id": "r1", "latitude": 1.0, "longitude": 2.0},
        {"region_id": None, "latitude": 3.0, "longitude": 4.0},
        {"region_id": "r3", "latitude": None, "longitude": 4.0},
    ]
    write_source(runner.config, **weather(upstream.url))
    code, [record], _ = runner.run_json("weather-api")
    assert code == 0
    assert {k: record["counts"][k] for k in ("items", "fetched", "skipped")} == {
        "items": 3,
        "fetched": 1,
        "skipped": 2,
    }
    assert [e["message"] for e in record["errors"]] == [
        "skipped: key field 'region_id' is missing or null",
        "skipped: {region.latitude} is missing or null: the item cannot fill the request",
    ]
    assert all("None" not in r.query_string for r in upstream.requests)


def test_mcp_through_the_dapr_sidecar(
    cli: Cli, tmp_path: Path, upstream: Upstream, mcp_server: McpTestServer, dapr_emulator: DaprEmulator
) -> None:
    dapr_emulator.apps["plantation-mcp"] = mcp_server.base_url
    runner = Runner(cli, tmp_path, {"DAPR_HTTP_ENDPOINT": dapr_emulator.url})
    write_source(runner.config, **weather(upstream.url))
    code, [record], _ = runner.run_json("weather-api")
    assert code == 0 and record["counts"]["stored"] == 5
    assert any(r.path == "/v1.0/invoke/plantation-mcp/method/mcp" for r in dapr_emulator.requests)


@pytest.mark.parametrize(
    ("tool", "extra", "message"),
    [
        (
            "list_regions_failing",
            {},
            "MCP tool 'list_regions_failing' on plantation-mcp ({url}) failed: Error executing tool list_regions_failing: region service unavailable",
        ),
        (
            "list_regions_string",
            {},
            "MCP tool 'list_regions_string' on plantation-mcp ({url}): expected a list of objects, got \"r1,r2,r3,r4,r5\" (set iteration.items_path if the list is nested)",
        ),
        (
            "list_region_ids",
            {},
            "MCP tool 'list_region_ids' on plantation-mcp ({url}): expected a list of objects, but item 0 is \"r1\"",
        ),
        (
            "list_regions_wrapped",
            {"items_path": "missing"},
            "MCP tool 'list_regions_wrapped' on plantation-mcp ({url}): no 'missing' (items_path) in the result",
        ),
    ],
)
def test_bad_tool_results_fail_the_run(
    runner: Runner,
    upstream: Upstream,
    mcp_server: McpTestServer,
    tool: str,
    extra: dict[str, str],
    message: str,
) -> None:
    write_source(runner.config, **weather(upstream.url, iteration={"source_tool": tool, **extra}))
    code, [record], _ = runner.run_json("weather-api")
    assert code == 1 and record["status"] == "failed"
    assert record["message"].startswith(message.format(url=mcp_server.url))
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("tool", "path"),
    [("list_regions_wrapped", "regions"), ("list_regions_text", None), ("list_regions_text_items", None)],
)
def test_tool_result_shapes(runner: Runner, upstream: Upstream, tool: str, path: str | None) -> None:
    write_source(runner.config, **weather(upstream.url, iteration={"source_tool": tool, "items_path": path}))
    code, [record], _ = runner.run_json("weather-api")
    assert (code, record["counts"]["stored"]) == (0, 5)


def test_unreachable_mcp_server(cli: Cli, tmp_path: Path, upstream: Upstream) -> None:
    runner = Runner(cli, tmp_path, {"PULLCTL_MCP_URL_PLANTATION_MCP": "http://127.0.0.1:9/mcp"})
    write_source(runner.config, **weather(upstream.url))
    code, [record], _ = runner.run_json("weather-api")
    assert code == 1
    assert record["message"].startswith(
        "MCP tool 'list_active_regions' on plantation-mcp (http://127.0.0.1:9/mcp): "
    )


def test_static_items_and_pagination_each_style(cli: Cli, tmp_path: Path, upstream: Upstream) -> None:
    runner = Runner(cli, tmp_path)
    styles = {
        "page-number": {
            "type": "page_number",
            "page_param": "page",
            "page_size_param": "per_page",
            "page_size": 10,
            "stop_when_empty_path": "data",
        },
        "offset": {"type": "offset", "limit": 10, "stop_when_empty_path": "data"},
        "cursor": {"type": "cursor", "cursor_path": "next_cursor", "stop_when_empty_path": "data"},
        "next-url": {"type": "next_url", "next_url_path": "next", "stop_when_empty_path": "results"},
        "link-header": {"type": "link_header"},
    }
    for name, pagination in styles.items():
        write_source(
            runner.config,
            name,
            request={
                "base_url": f"{upstream.url}/pages/{name}",
                "parameters": {"limit": 10} if name in ("cursor", "next-url") else {},
            },
            pagination=pagination,
            retry={"max_attempts": 1},
        )
        code, [record], _ = runner.run_json(name)
        assert code == 0, (name, record["errors"])
        assert record["counts"]["pages"] == 3, name  # 10 + 10 + 3 records of 23
        assert len(runner.documents(name)) == 3


def test_max_pages_with_pages_left_fails_the_item(runner: Runner, upstream: Upstream) -> None:
    write_source(
        runner.config,
        "endless",
        request={"base_url": f"{upstream.url}/pages/endless"},
        pagination={"type": "link_header", "max_pages": 4},
    )
    code, [record], _ = runner.run_json("endless")
    assert code == 1
    assert record["errors"][0]["message"] == "stopped at max_pages=4 with more pages left"
    assert len(runner.documents("endless")) == 4  # what was fetched is kept


def test_unknown_source_and_bad_flags(runner: Runner, upstream: Upstream) -> None:
    runner.env["PULLCTL_LOG_FORMAT"] = (
        "text"  # the messages as people read them (json: tests/test_json_logs.py)
    )
    write_source(runner.config, **weather(upstream.url))
    assert (
        runner("run", "weather-apy").stderr
        == "error: no source 'weather-apy' in the configs; did you mean 'weather-api'?\n"
    )
    assert (
        runner("run", "weather-api", "--from", "2026-01-01").stderr
        == "error: --from and --to go together (a backfill of [from, to))\n"
    )
    result = runner("run", "weather-api", "--from", "2026-01-02", "--to", "2026-01-01")
    assert result.exit_code == 2
    assert (
        result.stderr
        == "error: --to (2026-01-01T00:00:00+00:00) must be after --from (2026-01-02T00:00:00+00:00)\n"
    )
    assert (
        runner("run", "weather-api", "--shard", "4/4").stderr
        == "error: --shard '4/4': expected I/N with 0 <= I < N, e.g. 0/4\n"
    )
    assert (
        runner("run", "weather-api", "--only", "oops").stderr == "error: --only 'oops': expected NAME=VALUE\n"
    )
    assert runner("run", "weather-api", "--from", "yesterday", "--to", "x").stderr == (
        "error: --from 'yesterday': expected an ISO-8601 date or time, e.g. 2026-01-31 or 2026-01-31T06:00Z\n"
    )
    assert runner("run", "weather-api", "--replay", "r-1", "--dry-run").stderr == (
        "error: --replay reads the run from the store; it cannot be combined with --dry-run\n"
    )
    # refused by the library, which names its fields (step, overrides); the CLI says the flags typed
    result = runner("run", "weather-api", "--from", "2026-01-01", "--to", "2026-02-01", "--step", "1m")
    assert (result.exit_code, result.stderr) == (
        2,
        "error: --step makes 44640 windows of the backfill, at most 10000: use a longer step\n",
    )
    assert runner("run", "weather-api", "--set", "hourly={secret.token}").stderr == (
        "error: --set hourly={secret.token}: a secret can only be used in the source config's request\n"
    )


def test_shards_partition_the_items(runner: Runner, upstream: Upstream) -> None:
    write_source(runner.config, **weather(upstream.url))
    seen = []
    for i in range(3):
        result = runner("run", "weather-api", "--shard", f"{i}/3", "--dry-run", "--output", "json")
        *documents, record = result.stdout.splitlines()  # the record comes last
        assert all("content_hash" in json.loads(line) for line in documents)
        assert json.loads(record)["shard"] == f"{i}/3"
        finished = json.loads(result.stderr.splitlines()[-1])
        assert finished["event"] == "run_finished"
        seen.append(finished["counts"]["fetched"])
    assert sum(seen) == 5
    _, [record], _ = runner.run_json("weather-api", JOB_COMPLETION_INDEX="0")
    assert record["shard"] is None  # shards: 1 in the config: the index is ignored


def test_runs_lists_history(runner: Runner, upstream: Upstream) -> None:
    write_source(runner.config, **weather(upstream.url))
    _, [first], _ = runner.run_json("weather-api")
    _, [second], _ = runner.run_json("weather-api")
    listed = json.loads(runner("runs", "--output", "json").stdout)
    assert [r["run_id"] for r in listed] == [second["run_id"], first["run_id"]]
    table = runner("runs", "weather-api").stdout.splitlines()
    assert table[0].split()[:4] == ["RUN", "SOURCE", "TRIGGER", "STATUS"]
    assert table[1].split()[:4] == [second["run_id"], "weather-api", "manual", "succeeded"]

"""The production pipeline: MongoDB store and config store, DAPR pub/sub and webhook events, the outbox."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pullctl.asgi import serve_in_thread
from tests.conftest import Cli
from tests.emulators.dapr import DaprEmulator
from tests.runkit import Runner, weather, write_source
from tests.servers.mcp_server import McpTestServer
from tests.servers.upstream import Upstream

pytestmark = pytest.mark.mongo


@pytest.fixture
def mongo_runner(
    cli: Cli,
    tmp_path: Path,
    mongo_uri: str,
    mongo_database: str,
    mcp_server: McpTestServer,
    dapr_emulator: DaprEmulator,
) -> Runner:
    runner = Runner(
        cli,
        tmp_path,
        {
            "PULLCTL_CONFIG": mongo_uri,
            "PULLCTL_STORE": mongo_uri,
            "PULLCTL_MONGODB_DATABASE": mongo_database,
            "PULLCTL_MCP_URL_PLANTATION_MCP": mcp_server.url,
            "DAPR_HTTP_ENDPOINT": dapr_emulator.url,
            "PULLCTL_EVENTS": "dapr://pubsub/raw-documents",
        },
    )
    runner.files = tmp_path / "files"  # type: ignore[attr-defined]
    return runner


def _docs(mongo_uri: str, database: str) -> list[dict[str, Any]]:
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
    try:
        return list(client[database]["raw_documents"].find({}))
    finally:
        client.close()


def test_mongodb_end_to_end_with_events_and_outbox(
    mongo_runner: Runner,
    upstream: Upstream,
    mcp_server: McpTestServer,
    dapr_emulator: DaprEmulator,
    mongo_uri: str,
    mongo_database: str,
) -> None:
    files: Path = mongo_runner.files  # type: ignore[attr-defined]
    write_source(files, **weather(upstream.url))
    pushed = mongo_runner("config", "push", str(files))
    assert pushed.exit_code == 0, pushed.stderr
    assert pushed.stdout == "created    weather-api\n"
    assert mongo_runner("config", "push", str(files)).stdout == "unchanged  weather-api\n"

    code, [record], _ = mongo_runner.run_json("weather-api")
    assert code == 0, record
    assert record["counts"]["stored"] == 5 and record["events"] == {"sent": 5, "pending": 0}
    docs = _docs(mongo_uri, mongo_database)
    assert len(docs) == 5 and all(d["event_status"] == "sent" for d in docs)
    assert len(dapr_emulator.published) == 5
    message = dapr_emulator.published[0]
    assert (message.pubsub, message.topic, message.content_type) == (
        "pubsub",
        "raw-documents",
        "application/json",
    )
    by_id = {d["_id"]: d for d in docs}
    assert message.metadata["cloudevent.id"] == message.data["document_id"]
    stored = by_id[message.data["document_id"]]
    assert message.data == {
        "source_id": "weather-api",
        "document_id": stored["_id"],
        "content_hash": stored["content_hash"],
        "run_id": record["run_id"],
        "linkage": stored["linkage"],
        "size_bytes": len(stored["content"]),
        "fetched_at": message.data["fetched_at"],
    }

    code, [again], _ = mongo_runner.run_json("weather-api")
    assert (code, again["counts"]["duplicates"], again["events"]["sent"]) == (0, 5, 0)
    assert len(dapr_emulator.published) == 5  # no event for a duplicate

    mcp_server.regions = [
        *mcp_server.regions,
        {"region_id": "r6", "name": "New", "latitude": 10.0, "longitude": 20.0},
    ]
    dapr_emulator.publish_down = True
    code, [down], _ = mongo_runner.run_json("weather-api")
    assert code == 3 and down["status"] == "partial"
    assert down["events"] == {"sent": 0, "pending": 1}
    assert down["errors"][-1]["message"].startswith(
        "1 event(s) to dapr://pubsub/raw-documents left pending: DAPR could not publish"
    )
    assert sum(d["event_status"] == "pending" for d in _docs(mongo_uri, mongo_database)) == 1

    dapr_emulator.publish_down = False
    code, [recovered], _ = mongo_runner.run_json("weather-api")
    assert code == 0 and recovered["events"] == {"sent": 1, "pending": 0}
    assert len(dapr_emulator.published) == 6
    assert dapr_emulator.published[-1].data["linkage"]["region_id"] == "r6"
    assert all(d["event_status"] == "sent" for d in _docs(mongo_uri, mongo_database))

    runs = json.loads(mongo_runner("runs", "weather-api", "--output", "json").stdout)
    assert [r["status"] for r in runs] == ["succeeded", "partial", "succeeded", "succeeded"]


def test_config_push_validates_everything_first(mongo_runner: Runner, upstream: Upstream) -> None:
    files: Path = mongo_runner.files  # type: ignore[attr-defined]
    write_source(files, **weather(upstream.url))
    write_source(files, "broken", request={"base_url": "not a url"})
    result = mongo_runner("config", "push", str(files))
    assert result.exit_code == 2
    assert "broken.yaml:5:15: ingestion.request.base_url: must be an absolute http(s) URL" in result.stderr
    assert mongo_runner("config", "get", "weather-api", PULLCTL_LOG_FORMAT="text").stderr.startswith(
        "error: no config 'weather-api' in the config store"
    )


def test_config_get_and_delete(mongo_runner: Runner, upstream: Upstream) -> None:
    files: Path = mongo_runner.files  # type: ignore[attr-defined]
    write_source(files, **weather(upstream.url))
    mongo_runner("config", "push", str(files))
    got = mongo_runner("config", "get", "weather-api")
    assert got.exit_code == 0 and got.stdout.startswith("source_id: weather-api\ningestion:\n")
    listed = json.loads(mongo_runner("list", "--output", "json").stdout)
    assert [s["file"] for s in listed] == ["mongodb:source_configs/weather-api"]
    assert mongo_runner("config", "delete", "weather-api").stdout == "deleted    weather-api\n"
    assert mongo_runner("config", "delete", "weather-api").exit_code == 2


def test_config_push_needs_a_mongodb_location(cli: Cli, tmp_path: Path) -> None:
    result = cli("config", "push", "--to", str(tmp_path))
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"error: the config store is MongoDB: set PULLCTL_CONFIG (or --to) to mongodb://…, not '{tmp_path}'\n"
    )


@pytest.mark.usefixtures("pymongo_socket_leaks_tolerated")
def test_unreachable_store_fails_fast_with_the_password_masked(
    cli: Cli, tmp_path: Path, upstream: Upstream, mcp_server: McpTestServer
) -> None:
    runner = Runner(
        cli,
        tmp_path,
        {
            "PULLCTL_STORE": "mongodb://user:s3cret@127.0.0.1:1/",
            "PULLCTL_MCP_URL_PLANTATION_MCP": mcp_server.url,
        },
    )
    write_source(runner.config, **weather(upstream.url))
    started = time.monotonic()
    result = runner("run", "weather-api", PULLCTL_LOG_FORMAT="text")
    assert time.monotonic() - started < 10
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: cannot reach MongoDB at mongodb://user:***@127.0.0.1:1/ (database pullctl): "
    )
    assert "s3cret" not in result.stderr + result.stdout


def test_webhook_events(cli: Cli, tmp_path: Path, upstream: Upstream, mcp_server: McpTestServer) -> None:
    received: list[tuple[dict[str, Any], str]] = []
    failures = [2]

    async def hook(request: Request) -> Response:
        if failures[0]:
            failures[0] -= 1
            return Response(status_code=503)
        received.append((await request.json(), request.headers["idempotency-key"]))
        return Response(status_code=204)

    with serve_in_thread(Starlette(routes=[Route("/events", hook, methods=["POST"])])) as server:
        runner = Runner(
            cli,
            tmp_path,
            {"PULLCTL_MCP_URL_PLANTATION_MCP": mcp_server.url, "PULLCTL_EVENTS": f"{server.url}/events"},
        )
        write_source(runner.config, **weather(upstream.url))
        code, [record], _ = runner.run_json("weather-api")
    assert code == 0 and record["events"] == {"sent": 5, "pending": 0}
    assert len(received) == 5 and all(event["document_id"] == key for event, key in received)


def test_source_events_block_overrides_the_topic(
    cli: Cli, tmp_path: Path, upstream: Upstream, mcp_server: McpTestServer, dapr_emulator: DaprEmulator
) -> None:
    runner = Runner(
        cli,
        tmp_path,
        {
            "PULLCTL_MCP_URL_PLANTATION_MCP": mcp_server.url,
            "DAPR_HTTP_ENDPOINT": dapr_emulator.url,
            "PULLCTL_EVENTS": "dapr://pubsub/default",
        },
    )
    write_source(runner.config, **weather(upstream.url, events={"topic": "weather"}))
    code, _, _ = runner.run_json("weather-api", "--limit", "1")
    assert code == 0
    assert [(m.pubsub, m.topic) for m in dapr_emulator.published] == [("pubsub", "weather")]


def test_bad_events_setting(cli: Cli, tmp_path: Path, upstream: Upstream) -> None:
    runner = Runner(cli, tmp_path, {"PULLCTL_EVENTS": "kafka://x"})
    write_source(runner.config, **weather(upstream.url))
    result = runner("run", "weather-api", PULLCTL_LOG_FORMAT="text")
    assert result.exit_code == 2
    assert (
        result.stderr
        == "error: PULLCTL_EVENTS 'kafka://x': expected dapr://<pubsub>/<topic>, an http(s):// URL, or none\n"
    )


def test_render_reads_configs_from_the_configured_mongodb_database(
    mongo_runner: Runner, upstream: Upstream
) -> None:
    files: Path = mongo_runner.files  # type: ignore[attr-defined]
    write_source(files, **weather(upstream.url))
    assert mongo_runner("config", "push", str(files)).exit_code == 0
    rendered = mongo_runner("render", "--image", "ghcr.io/acme/pullctl:1.0")
    assert rendered.exit_code == 0, rendered.stderr
    assert "name: pull-weather-api\n" in rendered.stdout

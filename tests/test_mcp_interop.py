"""MCP interop found against the reference servers on PyPI and npm (issue 13, item 6).

Error messages are pinned whole: an MCP error names its server once, with any password masked.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pullctl.config.models import Iteration
from pullctl.errors import IterationError
from pullctl.run.iteration import call_mcp_tool, extract_items
from pullctl.settings import Settings
from tests.conftest import Cli
from tests.runkit import Runner, weather, write_source
from tests.servers.mcp_server import DEFAULT_REGIONS, McpTestServer, method_not_allowed_server
from tests.servers.upstream import Upstream

CLOSED = "http://127.0.0.1:9/mcp"  # the discard port: nothing listens on loopback
REFUSED = "ConnectError: All connection attempts failed"


@pytest.fixture
def runner(cli: Cli, tmp_path: Path, mcp_server: McpTestServer) -> Runner:
    return Runner(cli, tmp_path, {"PULLCTL_MCP_URL_PLANTATION_MCP": mcp_server.url})


def mcp_error(
    url: str, tool: str = "list_active_regions", source_mcp: str | None = None, **extra: Any
) -> str:
    """The message ``call_mcp_tool`` fails with, for a direct ``mcp_url`` (or ``source_mcp`` + its URL)."""
    if source_mcp:
        iteration = Iteration(foreach="region", source_mcp=source_mcp, source_tool=tool, **extra)
        settings = Settings(mcp_urls={f"PULLCTL_MCP_URL_{source_mcp.upper().replace('-', '_')}": url})
    else:
        iteration = Iteration(foreach="region", mcp_url=url, source_tool=tool, **extra)
        settings = Settings()
    with pytest.raises(IterationError) as caught:
        asyncio.run(call_mcp_tool(iteration, settings, deadline=10))
    return caught.value.message


def test_unreachable_mcp_url_is_named_once(cli: Cli, tmp_path: Path, upstream: Upstream) -> None:
    runner = Runner(cli, tmp_path)
    write_source(runner.config, **weather(upstream.url, iteration={"source_mcp": None, "mcp_url": CLOSED}))
    code, [record], _ = runner.run_json("weather-api")
    assert code == 1
    assert record["message"] == f"MCP tool 'list_active_regions' on {CLOSED}: {REFUSED}"


@pytest.mark.parametrize(
    ("source_mcp", "expected"),
    [
        (None, f"MCP tool 'list_active_regions' on http://reader:***@127.0.0.1:9/mcp: {REFUSED}"),
        (
            "plantation-mcp",
            f"MCP tool 'list_active_regions' on plantation-mcp (http://reader:***@127.0.0.1:9/mcp): {REFUSED}",
        ),
    ],
)
def test_mcp_error_masks_the_password_of_the_url(source_mcp: str | None, expected: str) -> None:
    assert mcp_error("http://reader:s3cret@127.0.0.1:9/mcp", source_mcp=source_mcp) == expected


# --- text contents that are a Python literal (mcp-server-sqlite's read_query answers str(rows)) ---


def test_python_literal_text_gives_the_items(mcp_server: McpTestServer) -> None:
    iteration = Iteration(foreach="region", mcp_url=mcp_server.url, source_tool="list_regions_python")
    items = asyncio.run(call_mcp_tool(iteration, Settings()))
    assert items == [{**r, "active": True, "closed_at": None} for r in DEFAULT_REGIONS]


def test_python_literal_text_runs_end_to_end(runner: Runner, upstream: Upstream) -> None:
    write_source(runner.config, **weather(upstream.url, iteration={"source_tool": "list_regions_python"}))
    code, [record], _ = runner.run_json("weather-api")
    assert (code, record["counts"]["stored"]) == (0, 5)


def test_text_neither_json_nor_a_literal_keeps_the_clear_error(mcp_server: McpTestServer) -> None:
    assert mcp_error(mcp_server.url, "list_regions_prose") == (
        f"MCP tool 'list_regions_prose' on {mcp_server.url}: the tool returned text that is neither JSON "
        "nor a Python literal: '5 regions: r1, r2, r3, r4, r5'"
    )


WHERE = "MCP tool 't' on http://mcp"


@pytest.mark.parametrize(
    ("text", "items"),
    [
        (
            "[{'id': 'r1', 'on': True, 'off': False, 'x': None}]",
            [{"id": "r1", "on": True, "off": False, "x": None}],
        ),
        ("({'id': 'r1', 'pair': (1, 2.5)},)", [{"id": "r1", "pair": [1, 2.5]}]),  # tuples become lists
        (
            "[{1: 'a', None: 'b', 2.5: 'c'}, {True: 'd'}]",
            [{"1": "a", "null": "b", "2.5": "c"}, {"true": "d"}],
        ),
        ('[{"id": "r1", "on": true}]', [{"id": "r1", "on": True}]),  # JSON is still read as JSON
    ],
)
def test_extract_items_reads_python_literals(text: str, items: list[dict[str, Any]]) -> None:
    assert extract_items(None, [text], None, WHERE) == items


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[{'id': b'r1'}]", "a Python literal JSON cannot hold (bytes): \"[{'id': b'r1'}]\""),
        ("[{'ids': {1, 2}}]", "a Python literal JSON cannot hold (set): \"[{'ids': {1, 2}}]\""),
        ("[{'z': 1+2j}]", "a Python literal JSON cannot hold (complex): \"[{'z': 1+2j}]\""),
        ("[{(1, 2): 'a'}]", "a Python literal JSON cannot hold (a tuple key): \"[{(1, 2): 'a'}]\""),
        # never evaluated: a call is not a literal
        ("__import__('os').getcwd()", "neither JSON nor a Python literal: \"__import__('os').getcwd()\""),
        ("[" * 100_000, "neither JSON nor a Python literal: '" + "[" * 200 + "'"),  # too deep: no crash
        (
            "-" * 100_000 + "1",
            "neither JSON nor a Python literal: '" + "-" * 200 + "'",
        ),  # MemoryError in 3.11
    ],
)
def test_extract_items_rejects_what_json_cannot_hold(text: str, expected: str) -> None:
    with pytest.raises(IterationError) as caught:
        extract_items(None, [text], None, WHERE)
    assert caught.value.message == f"{WHERE}: the tool returned text that is {expected}"


# --- a server that answers 405 to the streamable-HTTP POST: the legacy HTTP+SSE transport ---

SSE_ONLY = "the server answered 405 to a streamable-HTTP POST: it may speak only the legacy SSE transport"


def test_sse_only_server_is_reached_over_sse(caplog: pytest.LogCaptureFixture) -> None:
    with McpTestServer(transport="sse") as server:
        url = server.url
        iteration = Iteration(foreach="region", mcp_url=url, source_tool="list_active_regions")
        with caplog.at_level("WARNING", logger="pullctl"):
            items = asyncio.run(call_mcp_tool(iteration, Settings(), deadline=10))
        assert server.calls == [("list_active_regions", {})]
    assert url.endswith("/sse") and items == DEFAULT_REGIONS
    where = f"MCP tool 'list_active_regions' on {url}"
    assert [r.getMessage() for r in caplog.records] == [
        f"{where}: {SSE_ONLY}; trying it (a GET to the same URL)"
    ]


def test_sse_only_server_runs_end_to_end(cli: Cli, tmp_path: Path, upstream: Upstream) -> None:
    with McpTestServer(transport="sse") as server:
        runner = Runner(cli, tmp_path, {"PULLCTL_MCP_URL_PLANTATION_MCP": server.url})
        write_source(runner.config, **weather(upstream.url, iteration={"tool_arguments": {"limit": 2}}))
        code, [record], _ = runner.run_json("weather-api")
        assert server.calls == [("list_active_regions", {"limit": 2})]
    assert (code, record["status"], record["counts"]["stored"]) == (0, "succeeded", 2)


def test_sse_tool_error_is_a_failed_iteration() -> None:
    with McpTestServer(transport="sse") as server:
        url = server.url
        message = mcp_error(url, "list_regions_failing")
    assert message == (
        f"MCP tool 'list_regions_failing' on {url} failed: "
        "Error executing tool list_regions_failing: region service unavailable"
    )


def test_405_to_post_and_to_the_sse_get_says_how_to_bridge() -> None:
    with method_not_allowed_server() as url:
        message = mcp_error(url.replace("http://", "http://reader:s3cret@"))
    shown = url.replace("http://", "http://reader:***@")
    assert message == (
        f"MCP tool 'list_active_regions' on {shown}: {SSE_ONLY}, and the SSE fallback failed too: "
        "HTTP 405 Method Not Allowed; serve it over streamable HTTP, "
        "or put an SSE-to-streamable-HTTP bridge in front of it"
    )


def test_sse_only_server_behind_dapr_invocation_fails_fast_with_the_way_around(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Over SSE the server names its message endpoint at its own root (/messages/?session_id=...), which the
    # client would POST to on the sidecar, outside /v1.0/invoke/<app>/method: pullctl does not try.
    from tests.emulators.dapr import DaprEmulator

    with McpTestServer(transport="sse") as server, DaprEmulator() as dapr:
        dapr.apps["plantation-mcp"] = server.base_url
        iteration = Iteration(
            foreach="region", source_mcp="plantation-mcp", source_tool="list_active_regions", mcp_path="/sse"
        )
        with pytest.raises(IterationError) as caught:
            asyncio.run(call_mcp_tool(iteration, Settings(dapr_endpoint=dapr.url), deadline=10))
        url = f"{dapr.url}/v1.0/invoke/plantation-mcp/method/sse"
    assert caught.value.message == (
        f"MCP tool 'list_active_regions' on plantation-mcp ({url}): {SSE_ONLY}, which cannot go through DAPR "
        "service invocation; serve it over streamable HTTP, or put an SSE-to-streamable-HTTP bridge in front of it, "
        "or set PULLCTL_MCP_URL_PLANTATION_MCP to reach it directly"
    )
    assert caplog.records == []

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
from pullctl.run.iteration import call_mcp_tool
from pullctl.settings import Settings
from tests.conftest import Cli
from tests.runkit import Runner, weather, write_source
from tests.servers.upstream import Upstream

CLOSED = "http://127.0.0.1:9/mcp"  # the discard port: nothing listens on loopback
REFUSED = "ConnectError: All connection attempts failed"


def mcp_error(
    url: str, tool: str = "list_active_regions", source_mcp: str | None = None, **extra: Any
) -> str:
    """The message ``call_mcp_tool`` fails with, for a direct ``mcp_url`` (or ``source_mcp`` + its URL)."""
    if source_mcp:
        iteration = Iteration(foreach="region", source_mcp=source_mcp, source_tool=tool, **extra)
        settings = Settings(environ={f"PULLCTL_MCP_URL_{source_mcp.upper().replace('-', '_')}": url})
    else:
        iteration = Iteration(foreach="region", mcp_url=url, source_tool=tool, **extra)
        settings = Settings(environ={})
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

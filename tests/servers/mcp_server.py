"""A real MCP server for the iteration tests: ``mcp.server.mcpserver.MCPServer`` over streamable HTTP.

``McpTestServer`` serves ``MCPServer.streamable_http_app()`` with uvicorn on 127.0.0.1 (through
``pullctl.asgi.BackgroundServer``); ``url`` is ``http://127.0.0.1:<port>/mcp``. The ``mcp_server`` fixture
gives a started one per test. ``regions`` (a list of dicts, default ``DEFAULT_REGIONS``) and ``delay``
(seconds before ``list_active_regions`` answers) may be changed while it runs; ``calls`` records
``(tool name, arguments)`` for every call.

What ``mcp.Client(url, mode="auto").call_tool(name, {})`` returns (``CallToolResult``), checked against
mcp 2.3 in ``tests/test_servers.py`` (the last two tools in ``tests/test_mcp_interop.py``); ``R`` is the
region list::

    tool                   is_error  structured_content          content
    list_active_regions    False     {"result": R}               one TextContent per region, each an
                                                                 indented JSON object
    list_regions_failing   True      None                        [TextContent("Error executing tool
                                                                 list_regions_failing: region service
                                                                 unavailable")]
    list_regions_wrapped   False     {"regions": R, "total": n}  [TextContent(that object as indented JSON)]
    list_regions_string    False     {"result": "r1,r2,..."}     [TextContent("r1,r2,...")]
    list_region_ids        False     {"result": ["r1", ...]}     one TextContent per id ("r1", ...)
    list_regions_text      False     None                        [TextContent(json.dumps(R))]: one text
                                                                 item holding the whole list
    list_regions_text_items False    None                        one TextContent per region (indented JSON
                                                                 object): "one object per text item"
    list_regions_python     False    None                        [TextContent(str(rows))]: a Python literal,
                                                                 not JSON (``True``, ``None``, single quotes),
                                                                 as the reference SQLite server's
                                                                 ``read_query`` answers; each row is a region
                                                                 plus ``"active": True, "closed_at": None``
    list_regions_prose      False    None                        [TextContent("5 regions: r1, r2, ...")]:
                                                                 neither JSON nor a Python literal

``McpTestServer(transport="sse")`` serves ``MCPServer.sse_app()`` instead: the legacy HTTP+SSE transport
(``GET /sse`` opens the event stream, whose ``endpoint`` event names ``/messages/?session_id=...`` for the
POSTs), as ``mcp-server-sqlite`` and other reference servers of the 2024-11-05 era speak it; ``url`` is then
``http://127.0.0.1:<port>/sse``, and a streamable-HTTP POST to it is answered ``405 Method Not Allowed``
(Starlette: the route allows GET only). ``method_not_allowed_server()`` is less still: a Starlette app that answers 405
to every request, as a proxy or a server that speaks neither transport at that path may.

So a tool returning a list does give ``{"result": [...]}`` (DESIGN §4b), and a non-object return value is
wrapped the same way (``{"result": "..."}``). ``list_active_regions`` takes an optional ``limit`` argument
(the first ``limit`` regions), so tests can check that ``tool_arguments`` arrive. The legacy
initialize/session protocol (``mode="legacy"``) returns the same results.

Host checking (DNS-rebinding protection): ``streamable_http_app()`` turns it on by itself for
``host="127.0.0.1"``, allowing only ``Host: 127.0.0.1:<port>``, ``localhost:<port>`` and ``[::1]:<port>``
(and matching ``Origin``s); any other ``Host`` (a proxy that forwards ``Host: plantation-mcp``, or
``localhost`` without a port) gets ``421 Invalid Host header``. ``McpTestServer`` turns it off by default
so requests relayed by the DAPR emulator arrive whatever their Host; ``dns_rebinding_protection=True``
keeps the SDK's default to test that case.

``list_active_regions`` is the demo's own (``pullctl.demo_servers.build_mcp_server``, which also keeps
``MCPServer()`` from calling ``logging.basicConfig()``); the other tools are added here.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from pullctl import demo_servers
from pullctl.asgi import BackgroundServer

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

__all__ = ["DEFAULT_REGIONS", "McpTestServer", "build_mcp_server", "mcp_server", "method_not_allowed_server"]

DEFAULT_REGIONS: list[dict[str, Any]] = [
    {"region_id": "r1", "name": "Berlin", "latitude": 52.52, "longitude": 13.41},
    {"region_id": "r2", "name": "Nairobi", "latitude": -1.29, "longitude": 36.82},
    {"region_id": "r3", "name": "Sao Paulo", "latitude": -23.55, "longitude": -46.63},
    {"region_id": "r4", "name": "Tokyo", "latitude": 35.68, "longitude": 139.69},
    {"region_id": "r5", "name": "Reykjavik", "latitude": 64.15, "longitude": -21.94},
]


def build_mcp_server(state: McpTestServer) -> MCPServer[Any]:
    """The demo's ``MCPServer`` (``list_active_regions``, ``pullctl.demo_servers``) plus the test tools, all
    reading ``state.regions`` at call time."""
    from mcp.server.mcpserver.exceptions import ToolError

    server = demo_servers.build_mcp_server(state, name="pullctl-test-mcp")

    def regions(tool: str, arguments: dict[str, Any]) -> list[dict[str, Any]]:
        return demo_servers.take_regions(state, tool, arguments)

    @server.tool()
    def list_regions_failing() -> list[dict[str, Any]]:
        """Always fails: the client gets ``is_error=True``."""
        regions("list_regions_failing", {})
        raise ToolError("region service unavailable")

    @server.tool()
    def list_regions_wrapped() -> dict[str, Any]:
        """The regions nested in an object: ``{"regions": [...], "total": n}``."""
        found = regions("list_regions_wrapped", {})
        return {"regions": found, "total": len(found)}

    @server.tool()
    def list_regions_string() -> str:
        """Not a list: the region ids joined by commas."""
        return ",".join(str(r.get("region_id")) for r in regions("list_regions_string", {}))

    @server.tool()
    def list_region_ids() -> list[str]:
        """A list of non-objects: the region ids."""
        return [str(r.get("region_id")) for r in regions("list_region_ids", {})]

    @server.tool(structured_output=False)
    def list_regions_text() -> str:
        """No structured content: one text item holding the JSON list."""
        return json.dumps(regions("list_regions_text", {}))

    @server.tool(structured_output=False)
    def list_regions_text_items() -> list[dict[str, Any]]:
        """No structured content: one text item per region, each a JSON object."""
        return regions("list_regions_text_items", {})

    @server.tool(structured_output=False)
    def list_regions_python() -> str:
        """No structured content: ``str()`` of the rows, like ``mcp-server-sqlite``'s ``read_query``."""
        rows = [{**r, "active": True, "closed_at": None} for r in regions("list_regions_python", {})]
        return str(rows)

    @server.tool(structured_output=False)
    def list_regions_prose() -> str:
        """No structured content: a sentence, neither JSON nor a Python literal."""
        found = regions("list_regions_prose", {})
        return f"{len(found)} regions: " + ", ".join(str(r.get("region_id")) for r in found)

    return server


class McpTestServer:
    """The test MCP server on loopback; see the module docstring."""

    def __init__(
        self,
        regions: list[dict[str, Any]] | None = None,
        *,
        dns_rebinding_protection: bool = False,
        stateless_http: bool = False,
        transport: str = "streamable-http",
    ) -> None:
        if transport not in ("streamable-http", "sse"):
            raise ValueError(f"transport must be 'streamable-http' or 'sse', not {transport!r}")
        self.transport = transport
        self.regions: list[dict[str, Any]] = copy.deepcopy(DEFAULT_REGIONS if regions is None else regions)
        self.delay = 0.0
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.dns_rebinding_protection = dns_rebinding_protection
        self.stateless_http = stateless_http
        self.mcp = build_mcp_server(self)
        self._server: BackgroundServer | None = None

    def start(self) -> McpTestServer:
        from mcp.server.transport_security import TransportSecuritySettings

        if self._server is not None:
            raise RuntimeError("McpTestServer already started")
        # None lets the SDK protect loopback itself (see the module docstring).
        security = (
            None
            if self.dns_rebinding_protection
            else TransportSecuritySettings(enable_dns_rebinding_protection=False)
        )
        if self.transport == "sse":
            app = self.mcp.sse_app(transport_security=security)
        else:
            app = self.mcp.streamable_http_app(
                transport_security=security, stateless_http=self.stateless_http
            )
        self._server = BackgroundServer(app).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> McpTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: the app's root, for DAPR-style invocation."""
        if self._server is None:
            raise RuntimeError("McpTestServer is not started")
        return self._server.url

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>/mcp``: the streamable-HTTP endpoint (``/sse`` for ``transport="sse"``)."""
        return f"{self.base_url}/sse" if self.transport == "sse" else f"{self.base_url}/mcp"


@contextmanager
def method_not_allowed_server() -> Iterator[str]:
    """A loopback server answering ``405 Method Not Allowed`` to everything; yields its ``/mcp`` URL."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def not_allowed(request: Any) -> PlainTextResponse:
        return PlainTextResponse("Method Not Allowed", status_code=405)

    app = Starlette(routes=[Route("/mcp", not_allowed, methods=["GET", "POST", "DELETE"])])
    server = BackgroundServer(app).start()
    try:
        yield f"{server.url}/mcp"
    finally:
        server.stop()


@pytest.fixture
def mcp_server() -> Iterator[McpTestServer]:
    """A started ``McpTestServer`` with ``DEFAULT_REGIONS``, stopped after the test."""
    with McpTestServer() as server:
        yield server

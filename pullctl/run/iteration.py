"""The iteration list: a static ``items`` list, or an MCP tool's result (DESIGN §4b).

The MCP server is reached at ``iteration.mcp_url``, else ``PULLCTL_MCP_URL_<APP_ID>``, else through DAPR
service invocation. Any failure (unreachable, a tool error, a result that is not a list of objects)
is an ``IterationError`` naming the server, the tool and what came back.
"""

from __future__ import annotations

import ast
import json
import logging
from typing import TYPE_CHECKING, Any

from pullctl.config.models import Iteration
from pullctl.config.paths import lookup
from pullctl.errors import IterationError
from pullctl.redact import mask_url, url_redactor
from pullctl.settings import Settings, env_name

if TYPE_CHECKING:
    from mcp.types import CallToolResult

logger = logging.getLogger("pullctl")


def mcp_endpoint(iteration: Iteration, settings: Settings) -> tuple[str, bool]:
    """The MCP URL, and whether it goes through the DAPR sidecar."""
    if iteration.mcp_url:
        return iteration.mcp_url, False
    assert iteration.source_mcp
    direct = settings.mcp_url_for(iteration.source_mcp)
    if direct:
        return direct, False
    from urllib.parse import quote

    app = quote(iteration.source_mcp, safe="")
    return f"{settings.dapr_endpoint}/v1.0/invoke/{app}/method{iteration.mcp_path}", True


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:197] + "..."


_SCALARS = (str, int, float, bool, type(None))


def _parse_text(text: str, where: str) -> Any:
    """A text content as JSON, else as a Python literal (``mcp-server-sqlite`` answers ``str(rows)``).

    ``ast.literal_eval`` reads literals only (nothing is called or looked up); what it gives is made
    JSON-compatible: tuples become lists, dict keys become strings the way ``json.dumps`` writes them.
    """
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):  # deep or huge input: no crash
        raise IterationError(
            f"{where}: the tool returned text that is neither JSON nor a Python literal: {text[:200]!r}"
        ) from None
    try:
        return _json_value(value)
    except ValueError as exc:
        cannot = f"a Python literal JSON cannot hold ({exc})"
        raise IterationError(f"{where}: the tool returned text that is {cannot}: {text[:200]!r}") from None


def _json_value(value: Any) -> Any:
    """``value`` (from ``ast.literal_eval``) as JSON values; ValueError names what JSON cannot hold."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, _SCALARS):
                raise ValueError(f"a {type(key).__name__} key")
            out[key if isinstance(key, str) else json.dumps(key)] = _json_value(item)
        return out
    raise ValueError(type(value).__name__)  # bytes, set, complex, Ellipsis


def extract_items(
    structured: Any, texts: list[str], items_path: str | None, where: str
) -> list[dict[str, Any]]:
    """Items from a tool result: ``structured_content`` first, else the text contents parsed as JSON
    (or as Python literals, see ``_parse_text``)."""
    candidate: Any = None
    if structured is not None:
        if items_path:
            candidate = lookup(structured, items_path)
            if candidate is None:
                raise IterationError(
                    f"{where}: no '{items_path}' (items_path) in the result {_describe(structured)}"
                )
        elif isinstance(structured, dict) and set(structured) == {"result"}:
            candidate = structured["result"]
        else:
            candidate = structured
    else:
        parsed = [_parse_text(text, where) for text in texts]
        one = len(parsed) == 1 and isinstance(parsed[0], list | dict)
        candidate = parsed[0] if one else parsed
        if items_path:
            candidate = lookup(candidate, items_path)
            if candidate is None:
                raise IterationError(
                    f"{where}: no '{items_path}' (items_path) in the result {_describe(parsed)}"
                )
    if not isinstance(candidate, list):
        hint = "" if items_path else " (set iteration.items_path if the list is nested)"
        raise IterationError(f"{where}: expected a list of objects, got {_describe(candidate)}{hint}")
    bad = [i for i, v in enumerate(candidate) if not isinstance(v, dict)]
    if bad:
        raise IterationError(
            f"{where}: expected a list of objects, but item {bad[0]} is {_describe(candidate[bad[0]])}"
        )
    return candidate


SSE_ONLY = "it may speak only the legacy SSE transport"
SSE_BRIDGE_HINT = "serve it over streamable HTTP, or put an SSE-to-streamable-HTTP bridge in front of it"


class _PostNotAllowed(Exception):
    """The streamable-HTTP POST was answered 405: the server may speak only the legacy HTTP+SSE transport."""


async def call_mcp_tool(
    iteration: Iteration, settings: Settings, deadline: float = 60.0
) -> list[dict[str, Any]]:
    """The items of the iteration's MCP tool: over streamable HTTP, or over the legacy HTTP+SSE transport
    when the server answers the streamable-HTTP POST with 405 (an SSE-only server, such as the reference
    servers of the 2024-11-05 era run with ``--transport sse``)."""
    import anyio
    from mcp.types import TextContent

    url, via_dapr = mcp_endpoint(iteration, settings)
    shown = mask_url(url)
    server = f"{iteration.source_mcp} ({shown})" if iteration.source_mcp else shown
    where = f"MCP tool '{iteration.source_tool}' on {server}"
    redact = url_redactor(url)
    headers = {"dapr-api-token": settings.dapr_api_token} if via_dapr and settings.dapr_api_token else {}
    assert iteration.source_tool
    call = (iteration.source_tool, dict(iteration.tool_arguments))
    legacy = f"{where}: the server answered 405 to a streamable-HTTP POST: {SSE_ONLY}"
    over_sse = False
    try:
        with anyio.fail_after(deadline):
            try:
                result = await _call_streamable(url, headers, deadline, *call)
            except _PostNotAllowed:
                if via_dapr:  # the SSE server names its message endpoint at its root, outside the invoke path
                    assert iteration.source_mcp
                    app = env_name("PULLCTL_MCP_URL", iteration.source_mcp)
                    raise IterationError(
                        f"{legacy}, which cannot go through DAPR service invocation; {SSE_BRIDGE_HINT}, "
                        f"or set {app} to reach it directly"
                    ) from None
                logger.warning(f"{legacy}; trying it (a GET to the same URL)")
                over_sse = True
                result = await _call_sse(url, headers, deadline, *call)
    except TimeoutError:
        raise IterationError(
            f"{legacy}; over SSE: no answer within {deadline:g} s; {SSE_BRIDGE_HINT}"
            if over_sse
            else f"{where}: no answer within {deadline:g} s{_reach_hint(iteration, settings, via_dapr)}"
        ) from None
    except IterationError:
        raise
    except Exception as exc:  # the SDK raises many types (transport, protocol, ExceptionGroup)
        cause = redact(mask_url(_root_cause(exc)))
        raise IterationError(
            f"{legacy}, and the SSE fallback failed too: {cause}; {SSE_BRIDGE_HINT}"
            if over_sse
            else f"{where}: {cause}{_reach_hint(iteration, settings, via_dapr)}"
        ) from None
    texts = [c.text for c in result.content if isinstance(c, TextContent)]
    if result.is_error:
        raise IterationError(f"{where} failed: {' '.join(texts)[:500] or 'no message'}")
    return extract_items(result.structured_content, texts, iteration.items_path, where)


def _reach_hint(iteration: Iteration, settings: Settings, via_dapr: bool) -> str:
    """How to point a run at an MCP server it could not reach through the DAPR sidecar."""
    if not via_dapr or not iteration.source_mcp:
        return ""
    app = env_name("PULLCTL_MCP_URL", iteration.source_mcp)
    return (
        f"; check that the DAPR sidecar ({mask_url(settings.dapr_endpoint)}) runs and that"
        f" '{iteration.source_mcp}' is the server's app-id, or set {app} to the server's URL"
    )


async def _call_streamable(
    url: str, headers: dict[str, str], deadline: float, tool: str, arguments: dict[str, Any]
) -> CallToolResult:
    """One tool call over streamable HTTP; ``_PostNotAllowed`` when it failed and a POST was answered 405.

    The SDK turns an HTTP error into an ``MCPError`` without the status, so the status is read from the
    responses themselves (an httpx event hook), never from a message.
    """
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    post_statuses: list[int] = []

    async def record(response: httpx2.Response) -> None:
        if response.request.method == "POST":  # a GET (the optional event stream) may be 405 by the spec
            post_statuses.append(response.status_code)

    try:
        async with (
            httpx2.AsyncClient(
                headers=headers, timeout=httpx2.Timeout(deadline), event_hooks={"response": [record]}
            ) as http,
            Client(streamable_http_client(url, http_client=http), mode="auto") as client,
        ):
            return await client.call_tool(tool, arguments)
    except Exception:
        if 405 in post_statuses:
            raise _PostNotAllowed from None
        raise


async def _call_sse(
    url: str, headers: dict[str, str], deadline: float, tool: str, arguments: dict[str, Any]
) -> CallToolResult:
    """One tool call over the legacy HTTP+SSE transport, with the initialize handshake (all it carries)."""
    from mcp import Client
    from mcp.client.sse import sse_client

    transport = sse_client(url, headers=headers, timeout=deadline, sse_read_timeout=deadline)
    async with Client(transport, mode="legacy") as client:
        return await client.call_tool(tool, arguments)


def _root_cause(exc: BaseException) -> str:
    import httpx2

    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    while exc.__cause__ is not None and str(exc) == "":
        exc = exc.__cause__
    if isinstance(exc, httpx2.HTTPStatusError):  # its message repeats the URL: the status says it all
        return f"HTTP {exc.response.status_code} {exc.response.reason_phrase}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def resolve_items(iteration: Iteration | None, settings: Settings) -> list[dict[str, Any]] | None:
    """The items to iterate over, or None for a source without iteration (one fetch)."""
    if iteration is None:
        return None
    if iteration.items is not None:
        return list(iteration.items)
    return await call_mcp_tool(iteration, settings)

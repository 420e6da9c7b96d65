"""The iteration list: a static ``items`` list, or an MCP tool's result (DESIGN §4b).

The MCP server is reached at ``iteration.mcp_url``, else ``PULLCTL_MCP_URL_<APP_ID>``, else through DAPR
service invocation. Any failure (unreachable, a tool error, a result that is not a list of objects)
is an ``IterationError`` naming the server, the tool and what came back.
"""

from __future__ import annotations

import ast
import json
from typing import Any

from pullctl.config.models import Iteration
from pullctl.config.paths import lookup
from pullctl.errors import IterationError
from pullctl.pipeline.store import mask_url, url_redactor
from pullctl.settings import Settings


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


async def call_mcp_tool(
    iteration: Iteration, settings: Settings, deadline: float = 60.0
) -> list[dict[str, Any]]:
    import anyio
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.types import TextContent

    url, via_dapr = mcp_endpoint(iteration, settings)
    shown = mask_url(url)
    server = f"{iteration.source_mcp} ({shown})" if iteration.source_mcp else shown
    where = f"MCP tool '{iteration.source_tool}' on {server}"
    redact = url_redactor(url)
    headers = {"dapr-api-token": settings.dapr_api_token} if via_dapr and settings.dapr_api_token else {}
    assert iteration.source_tool
    try:
        with anyio.fail_after(deadline):
            async with (
                httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(deadline)) as http,
                Client(streamable_http_client(url, http_client=http), mode="auto") as client,
            ):
                result = await client.call_tool(iteration.source_tool, dict(iteration.tool_arguments))
    except TimeoutError:
        raise IterationError(f"{where}: no answer within {deadline:g} s") from None
    except IterationError:
        raise
    except Exception as exc:  # the SDK raises many types (transport, protocol, ExceptionGroup)
        raise IterationError(f"{where}: {redact(mask_url(_root_cause(exc)))}") from None
    texts = [c.text for c in result.content if isinstance(c, TextContent)]
    if result.is_error:
        raise IterationError(f"{where} failed: {' '.join(texts)[:500] or 'no message'}")
    return extract_items(result.structured_content, texts, iteration.items_path, where)


def _root_cause(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    while exc.__cause__ is not None and str(exc) == "":
        exc = exc.__cause__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def resolve_items(iteration: Iteration | None, settings: Settings) -> list[dict[str, Any]] | None:
    """The items to iterate over, or None for a source without iteration (one fetch)."""
    if iteration is None:
        return None
    if iteration.items is not None:
        return list(iteration.items)
    return await call_mcp_tool(iteration, settings)

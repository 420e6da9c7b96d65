"""The run's HTTP transport: one connection pool over aiohttp, and the environment's proxy.

What its errors mean is ``pullctl/transport_errors.py``.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import AiohttpResponseStream, map_aiohttp_exceptions

# What a send or a body read may raise when the wire fails (aiohttp's errors that httpx-aiohttp does not map
# escape as they are, e.g. ClientResponseError for a malformed status line).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    httpx.TransportError,
    OSError,
    aiohttp.ClientError,
)


def make_transport(concurrency: int, proxy: httpx.Proxy | None = None) -> Pool:
    """The run's one connection pool: an httpx transport over aiohttp's pool (see bench/run_bench.py).

    The fetcher sends straight through it, not through an ``httpx.AsyncClient``: pullctl does its own
    redirects, auth, timeouts and headers, and wants no cookie jar, so the client layer only adds cost.
    Measured on 2 cores, 5,000 GETs at concurrency 50 over this pool: 1,300 requests/s through
    ``AsyncClient.stream``, 2,400 through the transport. ``proxy`` (from ``env_proxy``) carries every request.
    """
    return Pool(
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency), proxy=proxy
    )


_NO_TIMEOUT = aiohttp.ClientTimeout()  # the fetcher bounds each exchange itself (asyncio.timeout)


class Pool(AiohttpTransport):
    """httpx-aiohttp's transport, which also sends a GET without building an ``httpx.Request`` (``get``).

    The fetcher's GETs (nearly all of a run's requests) go through ``get``: the same call into aiohttp
    that ``handle_async_request`` makes, the same errors, the same ``httpx.Response`` back, minus the
    request object (its URL parse and header merge were about 7 % of a run's CPU, py-spy over
    bench/run_bench.py). Everything else (a body, another transport in tests) takes the httpx route."""

    _sent: tuple[list[tuple[bytes, bytes]], list[tuple[str, str]]] = ([], [])

    async def get(self, url: str, headers: httpx.Headers) -> httpx.Response:
        """GET ``url`` (as ``str(httpx.URL(url))`` gives it: see ``plain_url``) with ``headers``."""
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        proxy = self.proxy
        raw = headers.raw  # the same headers as the last request's (the common case): their str pairs again
        if raw != self._sent[0]:
            self._sent = (raw, list(headers.items()))
        try:
            response = await self.client.request(
                "GET",
                url,
                headers=self._sent[1],
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=_NO_TIMEOUT,
                proxy=str(proxy.url) if proxy else None,
                proxy_auth=aiohttp.BasicAuth(*proxy.auth) if proxy and proxy.auth else None,
                proxy_headers=proxy.headers if proxy else None,
            ).__aenter__()
        except Exception:
            with map_aiohttp_exceptions():  # httpx's classes, as handle_async_request raises them
                raise
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=Body(response),
            extensions=extensions,
        )


class Body(AiohttpResponseStream):
    """A body from ``Pool.get``: ``head`` reads it straight from aiohttp, without ``Response.aiter_raw``'s
    chunker, context managers and two async generators (about 8 % of a run's samples, py-spy over
    bench/run_bench.py)."""

    def header(self, name: str) -> str:
        """``Response.headers.get(name, "")``, from aiohttp's headers (a tenth of the time)."""
        return ", ".join(self._aiohttp_response.headers.getall(name, ()))

    async def aclose(self) -> None:
        response = self._aiohttp_response
        if response.content.at_eof():  # read to its end: aiohttp has given the connection back
            response.release()
        else:
            await super().aclose()

    async def head(self, limit: int) -> bytes:
        """The raw body, or once it is past ``limit`` bytes what came so far (more than ``limit``)."""
        content = self._aiohttp_response.content
        chunks: list[bytes] = []
        total = 0
        with map_aiohttp_exceptions():
            while total <= limit and (chunk := await content.readany()):
                chunks.append(chunk)
                total += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def header(response: httpx.Response, name: str) -> str:
    """``response.headers.get(name, "")``; a response of ``Pool.get`` answers from aiohttp's headers."""
    stream = response.stream
    return stream.header(name) if isinstance(stream, Body) else response.headers.get(name, "")


_PLAIN = re.compile(
    r"(?P<scheme>https?)://[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
    r"(?::(?P<port>[1-9][0-9]{0,4}))?(?P<rest>/[A-Za-z0-9\-._~!$&'()*+,;=:@/%?]*)?"
)
_DOT_SEGMENT = re.compile(r"/\.\.?(?:[/?]|$)")


def plain_url(url: str) -> bool:
    """Whether ``str(httpx.URL(url)) == url`` without parsing it (13 us): an http(s) URL with a lower-case
    host, no default or zero-led port, no dot segments, no fragment and only characters httpx leaves as
    they are (tests/test_transport.py checks it against httpx over generated URLs)."""
    m = _PLAIN.fullmatch(url)
    if m is None:
        return False
    port = m.group("port")
    if port and (int(port) > 65535 or port == ("80" if m.group("scheme") == "http" else "443")):
        return False
    return _DOT_SEGMENT.search((m.group("rest") or "").partition("?")[0]) is None


# -- the environment's proxy ---------------------------------------------------------------------------


def env_proxy(url: str, environ: Mapping[str, str]) -> httpx.Proxy | None:
    """The proxy that ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` name for ``url``, unless ``NO_PROXY``
    exempts its host (the conventions of curl, requests and httpx). Chosen once per run, for the source's
    ``base_url``: a next page or redirect to another origin goes through the same proxy."""
    lower = {k.lower(): v for k, v in environ.items() if k.lower().endswith("_proxy") and v}
    parts = urlsplit(url)
    proxy = lower.get(f"{parts.scheme}_proxy") or lower.get("all_proxy")
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    if not proxy or _no_proxy(parts.hostname or "", port, lower.get("no_proxy", "")):
        return None
    url_ = httpx.URL(proxy if "://" in proxy else f"http://{proxy}")
    if not (url_.username or url_.password):
        return httpx.Proxy(url_)
    # Credentials go as a header: aiohttp moves an ``Authorization`` among the proxy headers to
    # ``Proxy-Authorization`` (on the request for http://, on the CONNECT for https://); its BasicAuth
    # route is deprecated.
    basic = base64.b64encode(f"{url_.username}:{url_.password}".encode()).decode()
    return httpx.Proxy(
        url_.copy_with(username=None, password=None), headers={"Authorization": f"Basic {basic}"}
    )


def proxy_userinfo(proxy: httpx.Proxy) -> str | None:
    """``user:password`` of a proxy from ``env_proxy`` (for the run's redactor), else None."""
    header = proxy.headers.get("authorization", "")
    return base64.b64decode(header.removeprefix("Basic ")).decode() if header else None


def _no_proxy(host: str, port: int | None, no_proxy: str) -> bool:
    """``NO_PROXY``: ``*``, host names (``example.com`` also covers its subdomains; a leading ``.`` or ``*.``
    is ignored), ``host:port``, IP addresses and CIDR blocks, comma-separated."""
    host = host.lower().strip("[]")
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            with contextlib.suppress(ValueError):
                if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                    return True
            continue
        name, entry_port = entry, ""
        if entry.count(":") == 1:
            name, _, entry_port = entry.partition(":")
        if entry_port and entry_port != str(port):
            continue
        name = name.strip("[]").lstrip("*").lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False

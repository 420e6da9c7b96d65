"""A real HTTP forward proxy on loopback, for ``HTTP_PROXY`` / ``NO_PROXY`` tests.

``ForwardProxy`` is an ASGI app under uvicorn (``pullctl.asgi.BackgroundServer``). A client configured
with it sends ``GET http://host:port/path?query HTTP/1.1`` (absolute form) with ``Host: host:port``;
uvicorn hands the app the path (absolute or origin form, depending on its HTTP parser) and the Host
header, from which the proxy rebuilds the target, forwards the request with httpx and relays the
response. ``requests`` records every target URL it forwarded. With ``credentials`` set
(``"user:password"``) a request without the matching ``Proxy-Authorization: Basic …`` gets ``407 Proxy
Authentication Required`` with ``Proxy-Authenticate: Basic realm="pullctl-test"`` (RFC 9110 §15.5.8), as a
real proxy answers. Only plain ``http://`` targets are proxied (no ``CONNECT`` tunnels): the upstream
under test is plain HTTP on loopback.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from pullctl.asgi import BackgroundServer

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "transfer-encoding",
}


class ForwardProxy:
    def __init__(self, credentials: str | None = None) -> None:
        self.credentials = credentials
        self.requests: list[str] = []
        self._server = BackgroundServer(self)

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> ForwardProxy:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
            if headers.get("proxy-authorization") != expected:
                await _respond(
                    send,
                    407,
                    [(b"proxy-authenticate", b'Basic realm="pullctl-test"')],
                    b"proxy authentication required",
                )
                return
        path = scope["path"]
        target = path if path.startswith("http://") else f"http://{headers.get('host', '')}{path}"
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        self.requests.append(target)
        forward = {k: v for k, v in headers.items() if k not in HOP_BY_HOP and k != "host"}
        async with httpx.AsyncClient(trust_env=False) as client:
            resp = await client.request(scope["method"], target, headers=forward)
        relay = [
            (k.encode(), v.encode())
            for k, v in resp.headers.items()
            if k not in HOP_BY_HOP and k not in ("content-length", "content-encoding")
        ]
        await _respond(send, resp.status_code, relay, resp.content)


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    proxy = ForwardProxy().start()
    try:
        yield proxy
    finally:
        proxy.stop()

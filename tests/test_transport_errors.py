"""What goes wrong on the wire, through the shipped transport (httpx-aiohttp) to real loopback servers.

Each failure has its own one-line reason: before, httpx-aiohttp's map turned a refused connection and a
server that hangs up into ``httpx.ConnectTimeout``, reported as "timed out after 30 s (timeout_seconds)".
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx
import pytest

from pullctl.config.models import SourceConfig
from pullctl.errors import FetchError
from pullctl.redact import Redactor
from pullctl.run.fetch import Fetcher
from pullctl.run.plan import FetchTask
from pullctl.run.transport import make_transport
from pullctl.transport_errors import transport_failure

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def raw_server(handler: Handler, *, read_request: bool = True) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that answers every connection with ``handler`` (after reading the request's
    head, unless ``read_request`` is false); yields its port."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if read_request:
                await reader.readuntil(b"\r\n\r\n")
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def fetch(url: str, **request: Any) -> tuple[str, int, dict[str, int]]:
    """Fetch ``url`` once through the production transport, two attempts, no waiting; (message, attempts)."""
    config = SourceConfig.model_validate(
        {
            "source_id": "s",
            "ingestion": {
                "schedule": "@daily",
                "request": {"base_url": url, **request},
                "retry": {"max_attempts": 2, "initial_delay_seconds": 0, "max_delay_seconds": 0},
            },
        }
    )
    counts = {"requests": 0, "retries": 0}
    transport = make_transport(1)

    async def no_sleep(_seconds: float) -> None: ...

    try:
        fetcher = Fetcher(config, transport, None, Redactor(), counts, sleep=no_sleep)
        with pytest.raises(FetchError) as exc:
            [p async for p in fetcher.pages(FetchTask("k", url, {}, {}, None, {}))]
    finally:
        await transport.aclose()
    return exc.value.message, exc.value.attempts, counts


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.anyio
async def test_connection_refused() -> None:
    port = closed_port()
    message, attempts, counts = await fetch(f"http://127.0.0.1:{port}/v1")
    assert message == (
        f"connection refused by 127.0.0.1:{port} (is anything listening there?) (gave up after 2 attempts)"
    )
    assert attempts == 2 and counts == {"requests": 2, "retries": 1}


@pytest.mark.anyio
async def test_server_closes_the_connection_before_answering() -> None:
    async def hang_up(_r: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        return None

    async with raw_server(hang_up) as port:
        message, attempts, _ = await fetch(f"http://127.0.0.1:{port}/v1")
    assert message == f"127.0.0.1:{port} closed the connection before answering (gave up after 2 attempts)"
    assert attempts == 2


@pytest.mark.anyio
async def test_connection_broken_in_the_middle_of_the_body() -> None:
    async def half(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[1, 2, 3,")
        await w.drain()

    async with raw_server(half) as port:
        message, attempts, _ = await fetch(f"http://127.0.0.1:{port}/v1")
    assert message.startswith(f"the connection to 127.0.0.1:{port} broke in the middle of the body: ")
    assert message.endswith("(gave up after 2 attempts)") and attempts == 2


@pytest.mark.anyio
async def test_tls_handshake_failure_is_not_retried() -> None:
    async def plain(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await w.drain()

    async with raw_server(plain, read_request=False) as port:  # plain HTTP; the client asks for TLS
        message, attempts, counts = await fetch(f"https://127.0.0.1:{port}/v1")
    assert message == f"TLS handshake with 127.0.0.1:{port} failed: WRONG_VERSION_NUMBER"
    assert "gave up" not in message and attempts == 1 and counts["retries"] == 0


@pytest.mark.anyio
async def test_a_real_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; the client gives up first

    async with raw_server(silent) as port:
        message, attempts, _ = await fetch(f"http://127.0.0.1:{port}/v1", timeout_seconds=0.2)
    assert (
        message
        == f"timed out after 0.2 s (timeout_seconds) waiting for 127.0.0.1:{port} (gave up after 2 attempts)"
    )
    assert attempts == 2


@pytest.mark.anyio
async def test_a_malformed_http_answer() -> None:
    async def garbage(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"NOT HTTP AT ALL\r\n\r\n")
        await w.drain()

    async with raw_server(garbage) as port:
        message, attempts, _ = await fetch(f"http://127.0.0.1:{port}/v1")
    assert message.startswith(f"127.0.0.1:{port} sent a malformed HTTP answer: ")
    assert attempts == 2


def test_dns_failure_has_its_own_reason() -> None:
    # No test resolves a name over the network: the transport's DNS error, as httpx-aiohttp chains it.
    from aiohttp.client_reqrep import ConnectionKey

    key = ConnectionKey("no-such-host.invalid", 443, True, True, None, None, None)
    dns = aiohttp.ClientConnectorDNSError(key, OSError(-2, "Name or service not known"))
    wrapped = httpx.ConnectTimeout("Cannot connect")
    wrapped.__cause__ = dns
    failure = transport_failure(wrapped, "no-such-host.invalid:443", 30)
    assert (failure.kind, failure.reason) == (
        "dns",
        "cannot resolve the host name of no-such-host.invalid:443 (DNS lookup failed)",
    )


@pytest.mark.parametrize(
    ("exc", "kind", "reason"),
    [
        (
            httpx.ConnectError("[Errno 111] Connection refused"),
            "connect",
            "cannot connect to h:1: [Errno 111] Connection refused",
        ),
        (httpx.ReadTimeout("read"), "timeout", "timed out after 30 s (timeout_seconds) waiting for h:1"),
        (
            httpx.RemoteProtocolError("peer closed"),
            "closed",
            "h:1 closed the connection before a complete answer: peer closed",
        ),
        (httpx.ReadError("reset"), "reset", "the connection to h:1 broke mid-response: reset"),
        (
            ConnectionRefusedError(111, "refused"),
            "refused",
            "connection refused by h:1 (is anything listening there?)",
        ),
        (TimeoutError(), "timeout", "timed out after 30 s (timeout_seconds) waiting for h:1"),
    ],
)
def test_httpx_and_os_errors(exc: BaseException, kind: str, reason: str) -> None:
    # httpx.MockTransport (the fetcher's unit tests) and httpx's own transport raise these as they are
    failure = transport_failure(exc, "h:1", 30)
    assert (failure.kind, failure.reason) == (kind, reason)

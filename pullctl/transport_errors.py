"""What went wrong on the wire: one table from the transports' exceptions to a kind and a one-line reason.

The shipped transport is httpx-aiohttp over aiohttp's pool. It translates aiohttp's errors into httpx's
classes, but coarsely: a refused connection, a server that hangs up and a DNS failure all arrive as
``httpx.ConnectTimeout`` (its map picks ``ClientConnectionError -> ConnectTimeout`` for every subclass).
So ``transport_failure`` reads the aiohttp error it chains (``__cause__``) first, then httpx's own classes
(``httpx.MockTransport`` in tests, or httpx's default transport), then plain ``OSError``s. Each kind has
one line a user can act on; the retry decision (``pullctl/retry.py``) says which kinds are worth another try.

    kind       what happened                                      retried
    timeout    no complete answer within timeout_seconds          yes
    refused    nothing listens on that host and port              yes
    dns        the host name does not resolve                     yes (cluster DNS has bad moments)
    tls        the TLS handshake or certificate check failed       no: another try cannot fix it
    closed     the server closed the connection before answering  yes
    reset      the connection broke in the middle of the body     yes
    connect    any other failure to connect                       yes
    proxy      the proxy refused or could not be reached          yes
    protocol   the server broke HTTP (a malformed answer)         yes
    unsupported a URL scheme the transport cannot send            no
"""

from __future__ import annotations

import errno
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from pullctl.retry import TransportKind


@dataclass(frozen=True)
class TransportFailure:
    kind: TransportKind
    reason: str


def transport_failure(exc: BaseException, host: str, timeout: float) -> TransportFailure:
    """What went wrong on the wire, as one line naming ``host`` (``host:port``); never a traceback."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException) and not _is_aiohttp_connection(exc):
        return _timed_out(host, timeout)
    cause = _aiohttp_cause(exc)
    if cause is not None:
        return _from_aiohttp(cause, host, timeout)
    if isinstance(exc, httpx.ProxyError):
        return TransportFailure("proxy", f"the proxy failed: {exc}")
    if isinstance(exc, httpx.ConnectError):
        return _from_os_error(exc, host) or TransportFailure("connect", f"cannot connect to {host}: {exc}")
    if isinstance(exc, httpx.RemoteProtocolError):
        return TransportFailure("closed", f"{host} closed the connection before a complete answer: {exc}")
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return TransportFailure("reset", f"the connection to {host} broke mid-response: {exc}")
    if isinstance(exc, httpx.UnsupportedProtocol):
        return TransportFailure("unsupported", f"cannot send this URL: {exc}")
    if isinstance(exc, httpx.TransportError):
        return TransportFailure("connect", f"{type(exc).__name__} talking to {host}: {exc}")
    if isinstance(exc, OSError):
        return _from_os_error(exc, host) or TransportFailure(
            "connect", f"network error talking to {host}: {exc}"
        )
    return TransportFailure("connect", f"{type(exc).__name__} talking to {host}: {exc}")


def _timed_out(host: str, timeout: float) -> TransportFailure:
    return TransportFailure("timeout", f"timed out after {timeout:g} s (timeout_seconds) waiting for {host}")


def _aiohttp_cause(exc: BaseException) -> BaseException | None:
    seen = exc
    for _ in range(3):
        if type(seen).__module__.startswith("aiohttp"):
            return seen
        if seen.__cause__ is None:
            return None
        seen = seen.__cause__
    return None


def _is_aiohttp_connection(exc: BaseException) -> bool:
    """httpx-aiohttp raises ``ConnectTimeout`` for every aiohttp connection error: not a real timeout."""
    cause = _aiohttp_cause(exc)
    return cause is not None and not isinstance(cause, TimeoutError)


def _from_aiohttp(exc: BaseException, host: str, timeout: float) -> TransportFailure:
    import aiohttp  # only ever called with an aiohttp error: already imported

    if isinstance(exc, TimeoutError):  # ServerTimeoutError and its kin are TimeoutErrors
        return _timed_out(host, timeout)
    if isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        return TransportFailure("proxy", f"the proxy failed while connecting to {host}: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return TransportFailure("tls", f"TLS certificate of {host} not accepted: {exc.certificate_error}")
    if isinstance(exc, aiohttp.ClientSSLError):
        return TransportFailure("tls", f"TLS handshake with {host} failed: {_ssl_reason(exc)}")
    dns = getattr(aiohttp, "ClientConnectorDNSError", None)  # aiohttp >= 3.10
    if dns is not None and isinstance(exc, dns):
        return TransportFailure("dns", f"cannot resolve the host name of {host} (DNS lookup failed)")
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        return _from_os_error(os_error, host) or TransportFailure(
            "connect", f"cannot connect to {host}: {os_error.strerror or os_error}"
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return TransportFailure("closed", f"{host} closed the connection before answering")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TransportFailure("reset", f"the connection to {host} broke in the middle of the body: {exc}")
    if isinstance(exc, aiohttp.ClientOSError | ConnectionError):
        return _from_os_error(exc, host) or TransportFailure("reset", f"connection to {host} failed: {exc}")
    if isinstance(exc, aiohttp.InvalidURL):
        return TransportFailure("unsupported", f"cannot send this URL: {exc}")
    if isinstance(exc, aiohttp.ClientResponseError):
        return TransportFailure("protocol", f"{host} sent a malformed HTTP answer: {exc.message}")
    return TransportFailure("connect", f"{type(exc).__name__} talking to {host}: {exc}")


def _from_os_error(exc: BaseException, host: str) -> TransportFailure | None:
    chain: BaseException | None = exc
    while chain is not None:
        if isinstance(chain, ConnectionRefusedError) or getattr(chain, "errno", None) == errno.ECONNREFUSED:
            return TransportFailure("refused", f"connection refused by {host} (is anything listening there?)")
        if isinstance(chain, ConnectionResetError) or getattr(chain, "errno", None) == errno.ECONNRESET:
            return TransportFailure("reset", f"connection reset by {host}")
        if isinstance(chain, ssl.SSLError):
            return TransportFailure("tls", f"TLS handshake with {host} failed: {_ssl_reason(chain)}")
        if isinstance(chain, OSError) and "gaierror" in type(chain).__name__:
            return TransportFailure("dns", f"cannot resolve the host name of {host} (DNS lookup failed)")
        chain = chain.__cause__ or chain.__context__
    return None


def _ssl_reason(exc: BaseException) -> str:
    """OpenSSL's reason (``WRONG_VERSION_NUMBER``, ``CERTIFICATE_VERIFY_FAILED``) inside aiohttp's wrapper."""
    chain: BaseException | None = exc
    for _ in range(4):
        inner = getattr(chain, "os_error", None)  # aiohttp's connector errors wrap the ssl.SSLError here
        if isinstance(inner, BaseException) and inner is not chain:
            chain = inner
            continue
        if isinstance(chain, ssl.SSLError) and getattr(chain, "reason", None):
            return str(chain.reason)
        if chain is None or chain.__cause__ is None:
            break
        chain = chain.__cause__
    return str(chain or exc)


def host_of(url: str) -> str:
    """``host:port`` of a URL, for messages (the port the scheme implies when none is written)."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return f"{parts.hostname}:{port}" if port else str(parts.hostname)

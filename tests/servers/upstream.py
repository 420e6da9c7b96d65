"""A fake upstream REST API for the ``pullctl run`` tests, served for real by uvicorn on 127.0.0.1.

``Upstream`` wraps a Starlette app in ``pullctl.asgi.BackgroundServer``; the ``upstream`` fixture gives a
fresh, started one per test (``with Upstream() as up: ...`` outside pytest).

Endpoints (every JSON error body is ``{"error": true, "reason": "..."}``, like Open-Meteo):

``GET /v1/forecast`` (the demo's, ``pullctl.demo_servers``)
    Open-Meteo shaped: ``latitude``, ``longitude``, ``generationtime_ms`` (random on every call: use
    ``dedup.ignore_fields``), ``utc_offset_seconds`` (0), ``timezone`` (the ``timezone`` parameter,
    default ``GMT``), ``timezone_abbreviation``, ``elevation``, and with ``hourly=a,b`` the sections
    ``hourly_units`` and ``hourly`` (``time`` plus one list per variable; ``HOURLY_UNITS`` lists the known
    ones). Everything but ``generationtime_ms`` is a function of the query. Hours run from ``start_date``
    to ``end_date`` inclusive (``YYYY-MM-DD``, both or neither, at most 92 days), else ``forecast_days``
    (default 2, 1..16) from ``DEFAULT_START`` (a fixed date, so runs repeat exactly). Two days of the
    four usual variables is about 2 KB. 400 when ``latitude``/``longitude`` is missing, not a number or
    out of range, for an unknown ``hourly`` variable, or for bad dates.
``/auth/api-key`` (header ``Upstream.api_key_header``, default ``X-API-Key``), ``/auth/api-key-query``
(query parameter ``Upstream.api_key_query_param``, default ``api_key``), ``/auth/bearer``, ``/auth/basic``
    GET or POST. The secret must equal ``Upstream.api_key`` / ``.bearer_token`` /
    ``.basic_user:.basic_password``, else 401. Success echoes ``{"authenticated": true, "scheme": ...,
    "query": {...}}`` (the query minus the api key parameter); a secret is never echoed.
Pagination over ``Upstream.records`` (default ``make_records(23)``, ``{"id": 1..23, "name", "value"}``):
    ``/pages/page-number?page=1&per_page=10`` -> ``{"data": [...], "page", "per_page", "total"}``;
    pages start at 1.
    ``/pages/offset?offset=0&limit=10`` -> ``{"data": [...], "offset", "limit", "total"}``
    ``/pages/cursor?cursor=&limit=10`` -> ``{"data": [...], "next_cursor": str|null,
    "meta": {"next_cursor": ...}}``; the cursor is opaque, an unknown one is 400.
    ``/pages/next-url?limit=10`` -> ``{"results": [...], "next": "<absolute url>"|null}``; the next URL
    carries every query parameter of the request plus ``after`` and a ``sig`` the client cannot guess
    (a missing or wrong ``sig`` is 400).
    ``/pages/link-header?page=1&per_page=10`` -> a bare JSON list, with
    ``Link: <url>; rel="next", <url>; rel="last"`` (and ``first``/``prev`` after page 1); the other query
    parameters are carried into the links.
    ``/pages/endless`` -> always a full page (``per_page`` or ``limit``, default 10) and always a next
    page, in every style at once (``data``, ``page``, ``next_cursor``, ``next``, ``Link``): for
    ``max_pages`` tests.
    ``/pages/empty`` -> ``{"data": []}``
    A page past the end is empty (200). A repeated query parameter (``?page=1&page=2``) is 400 on every
    ``/pages/*`` endpoint, so a client that re-adds its ``parameters`` to a next URL gets caught.
Servers that fool a naive paginator (over ``Upstream.records`` too; ``Upstream.max_rows`` defaults to 20):
    ``/pages/capped-offset?offset=0&limit=10`` -> ``{"data": [...]}``, PostgREST-like (``db-max-rows``):
    never more than ``max_rows`` records whatever ``limit`` asks, ``records[offset:offset +
    min(limit, max_rows)]``; a short page is not the end.
    ``/pages/capped-page-number?page=1&per_page=10`` -> ``{"data": [...]}``, GitHub-like: the page size
    is ``size = min(per_page, max_rows)`` and page p holds ``records[(p-1)*size : p*size]``.
    ``/pages/bare-offset?offset=0&limit=10`` -> like ``/pages/offset``, but a bare JSON list (no ``data``).
    ``/pages/repeat-last?page=1&per_page=10`` -> ``{"data": [...], "page"}``; a page past the end repeats
    the records of the last page (its ``page`` is the one asked for) instead of being empty.
    ``/pages/stuck-cursor?cursor=&limit=10`` -> ``{"data": [...], "next_cursor": "abc"}``: the next cursor
    is always ``"abc"``; without a cursor the first ``limit`` records, with ``abc`` the next ``limit``
    (a full page, different from the first), any other cursor is 400.
    ``/pages/odata?$skiptoken=`` -> Microsoft Graph-like ``{"@odata.context", "value": [10 records],
    "@odata.nextLink": "<absolute url>"}``; the next link carries the query plus a literal
    ``$skiptoken=<opaque>`` (an unknown one is 400); the last page has no ``@odata.nextLink`` key.
    ``/pages/stripe?starting_after=&limit=10`` -> Stripe-like ``{"object": "list", "url", "data": [...],
    "has_more": bool}``; ``starting_after`` is a record id (records after it; an unknown id is 400), so
    the page after the last record is ``data: []``.
    ``/pages/ignores-page?page=`` -> always ``{"data": [the first 10 records]}``, whatever ``page`` says.
A Microsoft Graph-like API for parent/child sources (teams -> channels -> messages), each level paged
in another style; sizes from ``Upstream.graph`` (``GraphShape``: teams, channels per team, messages per
channel; ids ``t1``, ``t1-c2``, ``t1-c2-m3``):
    ``/graph/teams?page=&per_page=`` -> a bare list of ``{"id", "displayName"}`` with ``Link: rel="next"``
    (per_page default 2).
    ``/graph/teams/{team}/channels?$skiptoken=`` -> ``{"value": [2 channels], "@odata.nextLink": url}``
    (the key absent on the last page); an unknown team is 404.
    ``/graph/teams/{team}/channels/{channel}/messages?cursor=`` -> ``{"data": [10 messages],
    "next_cursor": str|null}``; an unknown channel is 404.
    ``/graph/users?ids=a,b`` -> ``{"value": [{"id", "name"} for each id]}``: a batch of ids in one request.
Cursors in every place (over ``Upstream.records``, pages of ``page_size``/``limit``, default 10):
    ``POST /pages/notion`` body ``{"start_cursor"?, "page_size"?}`` -> ``{"results", "has_more", "next_cursor"}``;
    the last page still carries a ``next_cursor`` (``"stale"``) with ``has_more: false``.
    ``POST /graphql`` body ``{"query", "variables": {"after"?, "first"?}}`` -> ``{"data": {"search": {"nodes",
    "pageInfo": {"endCursor", "hasNextPage"}}}}``; a ``query`` without ``search`` is 400.
    ``/pages/header-cursor?cursor=`` -> a bare list; the next cursor in the ``X-Next-Cursor`` header.
    ``/pages/needs-cursor?cursor=`` (or header ``X-Cursor``) -> ``{"data", "next_cursor"}``; 400 without a
    cursor; ``start`` is the first page.
    ``/pages/filtered?status=&cursor=`` -> ``{"data", "next_cursor"}``; ``status`` (required on the first
    page) with a ``cursor`` is 400, as APIs that refuse filters beside a cursor do.
``/pages/limit-pair?limit=OFFSET,COUNT`` -> ``{"data": [...]}``: the offset inside a parameter's value.
``/limited?item=`` -> ``{"item"}`` with ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (epoch seconds):
    ``Upstream.rate_budget`` requests (default 3) per window of ``rate_window`` seconds (default 2), then 429
    until the window ends; ``rate_reset_ahead`` (seconds) makes the reset header say that instead.
``/pages/numbers?offset=&limit=`` -> ``{"data": [{"id": n}, ...]}`` for n in 1..``Upstream.numbers``,
    generated per page (nothing held): a parent of any size (limit default 1000, at most 5000).
``/echo`` (GET, POST, PUT)
    ``{"method", "path", "query": {name: last value}, "headers": {lower-case name: value},
    "json": parsed body or null, "body": body text}``.

Recording: every request lands in ``requests`` (``RecordedRequest``), and ``hits`` counts it under its
path and, when the request has the ``key_param`` query parameter (default ``latitude``), under
``(path, value)`` too::

    upstream.hits["/v1/forecast"] == 3
    upstream.hits["/v1/forecast", "52.52"] == 2
    upstream.count("/pages/page-number", page="2") == 1

Failure injection: ``fail(path, kind, **options) -> Rule`` adds a rule. A request is served by the first
rule (in the order added) whose ``path`` equals the request path (``"*"`` matches any path), whose
``query`` items all equal the request's query parameters, and that has not used up its ``times``
(``None``: forever). So "the first two requests fail, then it works" is ``times=2``, and
``query={"latitude": "52.52"}`` fails one item of a run while the others succeed. ``fraction`` (default 1)
makes a rule serve only that share of the requests it matches, drawn from ``random.Random(seed)`` (default
seed 0, so a run's sequence of draws repeats): ``fraction=0.05`` answers about one request in twenty, and a
request it passes over goes on to the next rule or the normal response. ``rule.applied`` counts the requests
a rule has served. Every rule first waits ``delay`` seconds.

=================  ======================================================================================
kind               response
=================  ======================================================================================
``status``         ``status`` (required) with ``{"error": true, "reason": "injected <status>"}``, and a
                   ``Retry-After`` header when ``retry_after`` is given: a number is sent as whole
                   seconds, a ``datetime`` as an HTTP date, a string verbatim (see ``http_date()``)
``delay``          the normal response, after ``delay`` seconds
``trickle``        the normal response, its body sent ``chunk_size`` bytes at a time with ``interval``
                   seconds between chunks (Content-Length is the full size)
``reset``          the normal status and headers (with the full Content-Length), the first
                   ``after_bytes`` bytes of the body (never all of it), then the connection is closed
``truncated_json`` the first half of the normal body, with a Content-Length that matches (valid HTTP)
``malformed_json`` 200, ``application/json``, a body that is not JSON
``html``           ``status`` (default 200), ``text/html``, an HTML error page
``large``          200, a valid JSON object of exactly ``size`` bytes; ``chunked=True`` streams it
                   without Content-Length
``redirect_loop``  302 to the same URL with a ``_hop`` counter, forever
``empty``          200, ``application/json``, an empty body
``json``           ``status`` (default 200), ``application/json``, the JSON ``body`` given (an API's error
                   in a 200 body, say)
=================  ======================================================================================

Example::

    upstream.fail("/v1/forecast", "status", status=429, retry_after=2, times=1)
    upstream.fail("/v1/forecast", "reset", after_bytes=50, query={"latitude": "52.52"})
    upstream.fail("/v1/forecast", "delay", delay=5.0)
    upstream.fail("/v1/forecast", "status", status=503, fraction=0.05)   # ~5 % of requests, at random

``reset()`` drops the rules, the recorded requests and the counters; settings (records, secrets) stay.
``stop()`` ends every injected wait at once, so a test that times out does not hold the server up.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, Literal, get_args
from urllib.parse import parse_qsl, urlencode

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pullctl.asgi import BackgroundServer
from pullctl.demo_servers import DEFAULT_START, HOURLY_UNITS, forecast_response

__all__ = [
    "DEFAULT_START",
    "HOURLY_UNITS",
    "FaultKind",
    "RecordedRequest",
    "Rule",
    "Upstream",
    "http_date",
    "make_records",
    "upstream",
]

FaultKind = Literal[
    "status",
    "delay",
    "trickle",
    "reset",
    "truncated_json",
    "malformed_json",
    "html",
    "large",
    "redirect_loop",
    "empty",
    "json",
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

MALFORMED_JSON = b'{"latitude": 52.52, "hourly": {"time": ["2026-01-01T00:00",, ], temperature_2m: NaN'
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><h1>Bad Gateway</h1><p>The upstream server is temporarily unavailable.</p></body></html>\n"
)


def make_records(n: int) -> list[dict[str, Any]]:
    """``n`` records ``{"id": i, "name": "record-00i", "value": i * 1.5}``, ids from 1."""
    return [{"id": i, "name": f"record-{i:03d}", "value": i * 1.5} for i in range(1, n + 1)]


def http_date(seconds_from_now: float) -> str:
    """An HTTP date (RFC 9110 IMF-fixdate) ``seconds_from_now`` from now, for ``Retry-After``."""
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds_from_now), usegmt=True)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]  # the last value of each parameter
    query_string: str
    headers: dict[str, str]  # lower-case names


@dataclass
class Rule:
    """One injected failure; see the module docstring. ``applied`` counts the requests it served."""

    path: str
    kind: FaultKind
    times: int | None = None
    query: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    retry_after: float | str | datetime | None = None
    delay: float = 0.0
    chunk_size: int = 64
    interval: float = 0.2
    after_bytes: int = 100
    size: int = 0
    chunked: bool = False
    fraction: float = 1.0
    seed: int | str = 0
    body: Any = None  # kind json: the JSON body sent
    applied: int = 0
    _draw: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._draw = random.Random(self.seed)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.applied >= self.times

    def matches(self, path: str, query: Mapping[str, str]) -> bool:
        if self.path not in ("*", path) or self.exhausted:
            return False
        if not all(query.get(name) == value for name, value in self.query.items()):
            return False
        return self.fraction >= 1.0 or self._draw.random() < self.fraction


class _InjectedReset(Exception):
    """Raised by the ``reset`` fault after a partial body: uvicorn then closes the connection."""


class _DropInjectedResets(logging.Filter):
    """Keep uvicorn from logging our deliberate resets as application errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _InjectedReset))


_uvicorn_error_logger = logging.getLogger("uvicorn.error")
if not any(isinstance(f, _DropInjectedResets) for f in _uvicorn_error_logger.filters):
    _uvicorn_error_logger.addFilter(_DropInjectedResets())


class _BadRequest(Exception):
    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


def _error(reason: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": True, "reason": reason}, status_code=status)


def _int_param(request: Request, name: str, default: int, minimum: int, maximum: int = 10_000) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"Parameter '{name}' must be an integer. Given: {raw}") from None
    if not minimum <= value <= maximum:
        raise _BadRequest(f"Parameter '{name}' must be in range of {minimum} to {maximum}. Given: {value}")
    return value


def _reject_repeated_params(request: Request) -> None:
    names = [name for name, _ in request.query_params.multi_items()]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise _BadRequest(f"Repeated query parameter(s): {', '.join(repeated)}")


def _url_with(request: Request, path: str, drop: tuple[str, ...], **params: Any) -> str:
    """An absolute URL on this server: the request's query minus ``drop``, plus ``params``."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in drop and k not in params]
    query = urlencode([*kept, *((k, str(v)) for k, v in params.items())])
    return f"{str(request.base_url).rstrip('/')}{path}?{query}"


@dataclass
class GraphShape:
    teams: int = 3
    channels: int = 3  # per team
    messages: int = 12  # per channel

    def team_ids(self) -> list[str]:
        return [f"t{n}" for n in range(1, self.teams + 1)]

    def channel_ids(self, team: str) -> list[str]:
        return [f"{team}-c{n}" for n in range(1, self.channels + 1)] if team in self.team_ids() else []

    def message_ids(self, team: str, channel: str) -> list[str]:
        if channel not in self.channel_ids(team):
            return []
        return [f"{channel}-m{n}" for n in range(1, self.messages + 1)]


class Upstream:
    """The fake upstream API; see the module docstring for endpoints and ``fail()``."""

    def __init__(
        self,
        *,
        records: list[dict[str, Any]] | int = 23,
        api_key: str = "test-api-key",
        bearer_token: str = "test-bearer-token",
        basic_user: str = "test-user",
        basic_password: str = "test-password",
        key_param: str = "latitude",
    ) -> None:
        self.records: list[dict[str, Any]] = make_records(records) if isinstance(records, int) else records
        self.max_rows = 20  # the page-size cap of /pages/capped-*
        self.graph = GraphShape()
        self.numbers = 1000  # records of /pages/numbers
        self.rate_budget, self.rate_window = 3, 2.0
        self.rate_reset_ahead: float | None = None
        self.rate_windows = 0  # windows the /limited budget was opened in
        self._rate_end, self._rate_used = 0.0, 0
        self.bodies: list[
            tuple[str, Any]
        ] = []  # (path, parsed JSON body) of every POST to /pages/notion, /graphql
        self.api_key = api_key
        self.api_key_header = "X-API-Key"
        self.api_key_query_param = "api_key"
        self.bearer_token = bearer_token
        self.basic_user = basic_user
        self.basic_password = basic_password
        self.key_param = key_param
        self.feed = ChangeFeed()  # incremental (issue 16): records that change between runs
        self.rules: list[Rule] = []
        self.requests: list[RecordedRequest] = []
        self.hits: Counter[str | tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._server: BackgroundServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None
        self.app: ASGIApp = _FaultMiddleware(self._build_app(), self)

    # -- lifecycle

    def start(self) -> Upstream:
        if self._server is not None:
            raise RuntimeError("Upstream already started")
        self._server = BackgroundServer(self.app).start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        if self._loop is not None and self._closing is not None:
            with contextlib.suppress(RuntimeError):  # the loop may already be gone
                self._loop.call_soon_threadsafe(self._closing.set)
        self._server.stop()
        self._server = None

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, without a trailing slash."""
        if self._server is None:
            raise RuntimeError("Upstream is not started")
        return self._server.url

    # -- failure injection and recording

    def fail(
        self,
        path: str,
        kind: FaultKind = "status",
        *,
        times: int | None = None,
        query: Mapping[str, str] | None = None,
        status: int | None = None,
        retry_after: float | str | datetime | None = None,
        delay: float = 0.0,
        chunk_size: int = 64,
        interval: float = 0.2,
        after_bytes: int = 100,
        size: int = 0,
        chunked: bool = False,
        fraction: float = 1.0,
        seed: int | str = 0,
        body: Any = None,
    ) -> Rule:
        """Add a failure rule for requests to ``path``; see the module docstring."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        if kind == "status" and status is None:
            raise ValueError("fail(kind='status') needs status=")
        if kind == "delay" and delay <= 0:
            raise ValueError("fail(kind='delay') needs delay= > 0")
        if kind == "large" and size < 16:
            raise ValueError("fail(kind='large') needs size= of at least 16 bytes")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None for every request")
        if not 0.0 < fraction <= 1.0:
            raise ValueError("fraction must be in (0, 1]")
        rule = Rule(
            path=path,
            kind=kind,
            times=times,
            query=dict(query or {}),
            status=status,
            retry_after=retry_after,
            delay=delay,
            chunk_size=chunk_size,
            interval=interval,
            after_bytes=after_bytes,
            size=size,
            chunked=chunked,
            fraction=fraction,
            seed=seed,
            body=body,
        )
        with self._lock:
            self.rules.append(rule)
        return rule

    def reset(self) -> None:
        """Forget the rules, the recorded requests and the counters."""
        with self._lock:
            self.rules.clear()
            self.requests.clear()
            self.hits.clear()

    def count(self, path: str, **query: str) -> int:
        """How many recorded requests went to ``path`` with all of ``query``."""
        with self._lock:
            return sum(
                1
                for r in self.requests
                if r.path == path and all(r.query.get(k) == v for k, v in query.items())
            )

    def _record(self, request: RecordedRequest) -> Rule | None:
        with self._lock:
            self.requests.append(request)
            self.hits[request.path] += 1
            key = request.query.get(self.key_param)
            if key is not None:
                self.hits[request.path, key] += 1
            for rule in self.rules:
                if rule.matches(request.path, request.query):
                    rule.applied += 1
                    return rule
        return None

    async def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds``, or less when the server stops; True when it stopped."""
        if seconds <= 0:
            return False
        if self._closing is None:
            await asyncio.sleep(seconds)
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)
        return self._closing.is_set()

    # -- the app

    def _build_app(self) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            self._loop = asyncio.get_running_loop()
            self._closing = asyncio.Event()
            yield

        def handled(endpoint: Any) -> Any:
            async def wrapper(request: Request) -> Response:
                try:
                    response: Response = await endpoint(request)
                    return response
                except _BadRequest as exc:
                    return _error(exc.reason, exc.status)

            return wrapper

        auth = ["GET", "POST"]
        routes = [
            Route("/v1/forecast", handled(self._forecast)),
            Route("/auth/api-key", handled(self._auth_api_key), methods=auth),
            Route("/auth/api-key-query", handled(self._auth_api_key_query), methods=auth),
            Route("/auth/bearer", handled(self._auth_bearer), methods=auth),
            Route("/auth/basic", handled(self._auth_basic), methods=auth),
            Route("/pages/page-number", handled(self._page_number)),
            Route("/pages/offset", handled(self._offset)),
            Route("/pages/cursor", handled(self._cursor)),
            Route("/pages/next-url", handled(self._next_url)),
            Route("/pages/link-header", handled(self._link_header)),
            Route("/pages/endless", handled(self._endless)),
            Route("/pages/empty", handled(self._empty)),
            Route("/pages/capped-offset", handled(self._capped_offset)),
            Route("/pages/capped-page-number", handled(self._capped_page_number)),
            Route("/pages/bare-offset", handled(self._bare_offset)),
            Route("/pages/repeat-last", handled(self._repeat_last)),
            Route("/pages/stuck-cursor", handled(self._stuck_cursor)),
            Route("/pages/odata", handled(self._odata)),
            Route("/pages/stripe", handled(self._stripe)),
            Route("/pages/ignores-page", handled(self._ignores_page)),
            Route("/graph/teams", handled(self._graph_teams)),
            Route("/graph/teams/{team}/channels", handled(self._graph_channels)),
            Route("/graph/teams/{team}/channels/{channel}/messages", handled(self._graph_messages)),
            Route("/graph/users", handled(self._graph_users)),
            Route("/pages/numbers", handled(self._numbers)),
            Route("/limited", handled(self._limited)),
            Route("/pages/limit-pair", handled(self._limit_pair)),
            Route("/pages/notion", handled(self._notion), methods=["POST"]),
            Route("/graphql", handled(self._graphql), methods=["POST"]),
            Route("/pages/header-cursor", handled(self._header_cursor)),
            Route("/pages/needs-cursor", handled(self._needs_cursor)),
            Route("/pages/filtered", handled(self._filtered)),
            Route("/echo", handled(self._echo), methods=["GET", "POST", "PUT"]),
            *self.feed.routes(handled),  # incremental (issue 16)
        ]
        return Starlette(routes=routes, lifespan=lifespan)

    async def _forecast(self, request: Request) -> Response:
        return forecast_response(request.query_params)  # the demo's forecast (pullctl/demo_servers.py)

    @staticmethod
    def _authenticated(scheme: str, request: Request, drop: str | None = None) -> JSONResponse:
        query = {k: v for k, v in request.query_params.items() if k != drop}
        return JSONResponse({"authenticated": True, "scheme": scheme, "query": query})

    async def _auth_api_key(self, request: Request) -> Response:
        if request.headers.get(self.api_key_header) != self.api_key:
            return _error(f"missing or wrong {self.api_key_header} header", 401)
        return self._authenticated("api_key", request)

    async def _auth_api_key_query(self, request: Request) -> Response:
        if request.query_params.get(self.api_key_query_param) != self.api_key:
            return _error(f"missing or wrong {self.api_key_query_param} query parameter", 401)
        return self._authenticated("api_key_query", request, drop=self.api_key_query_param)

    async def _auth_bearer(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.bearer_token}":
            response = _error("missing or wrong bearer token", 401)
            response.headers["WWW-Authenticate"] = 'Bearer realm="upstream"'
            return response
        return self._authenticated("bearer", request)

    async def _auth_basic(self, request: Request) -> Response:
        credentials = f"{self.basic_user}:{self.basic_password}".encode()
        expected = "Basic " + base64.b64encode(credentials).decode()
        if request.headers.get("authorization") != expected:
            response = _error("missing or wrong basic credentials", 401)
            response.headers["WWW-Authenticate"] = 'Basic realm="upstream"'
            return response
        return self._authenticated("basic", request)

    async def _page_number(self, request: Request) -> Response:
        _reject_repeated_params(request)
        page = _int_param(request, "page", 1, 1)
        per_page = _int_param(request, "per_page", 10, 1, 1000)
        data = self.records[(page - 1) * per_page : page * per_page]
        return JSONResponse({"data": data, "page": page, "per_page": per_page, "total": len(self.records)})

    async def _offset(self, request: Request) -> Response:
        _reject_repeated_params(request)
        offset = _int_param(request, "offset", 0, 0, 1_000_000)
        limit = _int_param(request, "limit", 10, 1, 1000)
        data = self.records[offset : offset + limit]
        return JSONResponse({"data": data, "offset": offset, "limit": limit, "total": len(self.records)})

    @staticmethod
    def _encode_cursor(position: int) -> str:
        return base64.urlsafe_b64encode(f"pos:{position}".encode()).decode().rstrip("=")

    @staticmethod
    def _decode_cursor(cursor: str) -> int:
        try:
            text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            prefix, _, number = text.partition(":")
            if prefix != "pos":
                raise ValueError(text)
            return int(number)
        except ValueError:
            raise _BadRequest(f"Invalid cursor: {cursor}") from None

    async def _cursor(self, request: Request) -> Response:
        _reject_repeated_params(request)
        cursor = request.query_params.get("cursor") or ""
        position = self._decode_cursor(cursor) if cursor else 0
        limit = _int_param(request, "limit", 10, 1, 1000)
        data = self.records[position : position + limit]
        following = position + limit
        next_cursor = self._encode_cursor(following) if following < len(self.records) else None
        return JSONResponse({"data": data, "next_cursor": next_cursor, "meta": {"next_cursor": next_cursor}})

    @staticmethod
    def _signature(after: int) -> str:
        return f"s{after * 7919 % 10007:x}"

    async def _next_url(self, request: Request) -> Response:
        _reject_repeated_params(request)
        after = _int_param(request, "after", 0, 0, 1_000_000)
        if after and request.query_params.get("sig") != self._signature(after):
            raise _BadRequest("Invalid or missing 'sig' for 'after'; follow the 'next' URL as given")
        limit = _int_param(request, "limit", 10, 1, 1000)
        data = self.records[after : after + limit]
        following = after + limit
        next_url = None
        if following < len(self.records):
            next_url = _url_with(
                request, "/pages/next-url", ("after", "sig"), after=following, sig=self._signature(following)
            )
        return JSONResponse({"results": data, "next": next_url})

    async def _link_header(self, request: Request) -> Response:
        _reject_repeated_params(request)
        page = _int_param(request, "page", 1, 1)
        per_page = _int_param(request, "per_page", 10, 1, 1000)
        last = max(1, math.ceil(len(self.records) / per_page))
        data = self.records[(page - 1) * per_page : page * per_page]

        def link(target: int, rel: str) -> str:
            return f'<{_url_with(request, "/pages/link-header", (), page=target)}>; rel="{rel}"'

        links = []
        if page < last:
            links.append(link(page + 1, "next"))
        links.append(link(last, "last"))
        if page > 1:
            links += [link(1, "first"), link(min(page - 1, last), "prev")]
        return JSONResponse(data, headers={"Link": ", ".join(links)})

    async def _endless(self, request: Request) -> Response:
        _reject_repeated_params(request)
        size = _int_param(request, "per_page", _int_param(request, "limit", 10, 1, 1000), 1, 1000)
        cursor = request.query_params.get("cursor") or ""
        if cursor:
            position = self._decode_cursor(cursor)
        elif "offset" in request.query_params:
            position = _int_param(request, "offset", 0, 0, 10**9)
        else:
            position = (_int_param(request, "page", 1, 1, 10**9) - 1) * size
        page = position // size + 1
        data = [{"id": i, "name": f"endless-{i}"} for i in range(position + 1, position + size + 1)]
        next_url = _url_with(
            request, "/pages/endless", ("cursor", "offset", "limit"), page=page + 1, per_page=size
        )
        body = {
            "data": data,
            "page": page,
            "next_cursor": self._encode_cursor(position + size),
            "next": next_url,
        }
        return JSONResponse(body, headers={"Link": f'<{next_url}>; rel="next"'})

    async def _empty(self, request: Request) -> Response:
        return JSONResponse({"data": []})

    # -- servers that fool a naive paginator

    async def _capped_offset(self, request: Request) -> Response:
        _reject_repeated_params(request)
        offset = _int_param(request, "offset", 0, 0, 1_000_000)
        size = min(_int_param(request, "limit", 10, 1, 1000), self.max_rows)
        return JSONResponse({"data": self.records[offset : offset + size]})

    async def _capped_page_number(self, request: Request) -> Response:
        _reject_repeated_params(request)
        page = _int_param(request, "page", 1, 1)
        size = min(_int_param(request, "per_page", 10, 1, 1000), self.max_rows)
        return JSONResponse({"data": self.records[(page - 1) * size : page * size]})

    async def _bare_offset(self, request: Request) -> Response:
        _reject_repeated_params(request)
        offset = _int_param(request, "offset", 0, 0, 1_000_000)
        limit = _int_param(request, "limit", 10, 1, 1000)
        return JSONResponse(self.records[offset : offset + limit])

    async def _repeat_last(self, request: Request) -> Response:
        _reject_repeated_params(request)
        page = _int_param(request, "page", 1, 1)
        per_page = _int_param(request, "per_page", 10, 1, 1000)
        served = min(page, max(1, math.ceil(len(self.records) / per_page)))
        data = self.records[(served - 1) * per_page : served * per_page]
        return JSONResponse({"data": data, "page": page})

    async def _stuck_cursor(self, request: Request) -> Response:
        _reject_repeated_params(request)
        cursor = request.query_params.get("cursor") or ""
        if cursor not in ("", "abc"):
            raise _BadRequest(f"Invalid cursor: {cursor}")
        limit = _int_param(request, "limit", 10, 1, 1000)
        start = limit if cursor else 0
        return JSONResponse({"data": self.records[start : start + limit], "next_cursor": "abc"})

    async def _odata(self, request: Request) -> Response:
        _reject_repeated_params(request)
        token = request.query_params.get("$skiptoken") or ""
        position = self._decode_cursor(token) if token else 0
        body: dict[str, Any] = {
            "@odata.context": f"{str(request.base_url).rstrip('/')}/$metadata#records",
            "value": self.records[position : position + 10],
        }
        if position + 10 < len(self.records):
            kept = [(k, v) for k, v in request.query_params.multi_items() if k != "$skiptoken"]
            query = urlencode([*kept, ("$skiptoken", self._encode_cursor(position + 10))], safe="$")
            body["@odata.nextLink"] = f"{str(request.base_url).rstrip('/')}/pages/odata?{query}"
        return JSONResponse(body)

    async def _stripe(self, request: Request) -> Response:
        _reject_repeated_params(request)
        after = request.query_params.get("starting_after") or ""
        limit = _int_param(request, "limit", 10, 1, 100)
        ids = [str(r["id"]) for r in self.records]
        if after and after not in ids:
            raise _BadRequest(f"No such object: '{after}'")
        start = ids.index(after) + 1 if after else 0
        data = self.records[start : start + limit]
        has_more = start + limit < len(self.records)
        return JSONResponse({"object": "list", "url": "/pages/stripe", "data": data, "has_more": has_more})

    async def _ignores_page(self, request: Request) -> Response:
        _reject_repeated_params(request)
        return JSONResponse({"data": self.records[:10]})

    async def _graph_teams(self, request: Request) -> Response:
        _reject_repeated_params(request)
        page = _int_param(request, "page", 1, 1)
        size = _int_param(request, "per_page", 2, 1, 100)
        ids = self.graph.team_ids()
        teams = [{"id": t, "displayName": f"Team {t[1:]}"} for t in ids[(page - 1) * size : page * size]]
        headers = {}
        if page * size < len(ids):
            base = str(request.base_url).rstrip("/")
            headers["Link"] = f'<{base}/graph/teams?page={page + 1}&per_page={size}>; rel="next"'
        return JSONResponse(teams, headers=headers)

    async def _graph_channels(self, request: Request) -> Response:
        _reject_repeated_params(request)
        team = request.path_params["team"]
        ids = self.graph.channel_ids(team)
        if not ids:
            return _error(f"team {team} not found", 404)
        token = request.query_params.get("$skiptoken") or ""
        position = self._decode_cursor(token) if token else 0
        body: dict[str, Any] = {
            "@odata.context": f"{str(request.base_url).rstrip('/')}/$metadata#channels",
            "value": [{"id": c, "displayName": f"Channel {c}"} for c in ids[position : position + 2]],
        }
        if position + 2 < len(ids):
            query = urlencode([("$skiptoken", self._encode_cursor(position + 2))], safe="$")
            body["@odata.nextLink"] = f"{str(request.base_url).rstrip('/')}{request.url.path}?{query}"
        return JSONResponse(body)

    async def _graph_messages(self, request: Request) -> Response:
        _reject_repeated_params(request)
        team, channel = request.path_params["team"], request.path_params["channel"]
        ids = self.graph.message_ids(team, channel)
        if not ids:
            return _error(f"channel {channel} of team {team} not found", 404)
        cursor = request.query_params.get("cursor") or ""
        position = self._decode_cursor(cursor) if cursor else 0
        data = [{"id": m, "body": f"message {m}"} for m in ids[position : position + 10]]
        more = position + 10 < len(ids)
        return JSONResponse(
            {"data": data, "next_cursor": self._encode_cursor(position + 10) if more else None}
        )

    async def _graph_users(self, request: Request) -> Response:
        _reject_repeated_params(request)
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        if not ids:
            raise _BadRequest("ids is required")
        return JSONResponse({"value": [{"id": i, "name": f"User {i}"} for i in ids]})

    def _window(self, cursor: str | None, size: int) -> tuple[list[dict[str, Any]], str | None]:
        """The records after ``cursor`` (an encoded position) and the next cursor (None at the end)."""
        position = self._decode_cursor(cursor) if cursor else 0
        page = self.records[position : position + size]
        more = position + size < len(self.records)
        return page, self._encode_cursor(position + size) if more else None

    async def _notion(self, request: Request) -> Response:
        body = await request.json()
        self.bodies.append((request.url.path, body))
        page, nxt = self._window(body.get("start_cursor"), int(body.get("page_size") or 10))
        return JSONResponse({"results": page, "has_more": nxt is not None, "next_cursor": nxt or "stale"})

    async def _graphql(self, request: Request) -> Response:
        body = await request.json()
        self.bodies.append((request.url.path, body))
        if "search" not in str(body.get("query", "")):
            raise _BadRequest("Field 'search' missing from the query")
        variables = body.get("variables") or {}
        page, nxt = self._window(variables.get("after"), int(variables.get("first") or 10))
        info = {"endCursor": nxt, "hasNextPage": nxt is not None}
        return JSONResponse({"data": {"search": {"nodes": page, "pageInfo": info}}})

    async def _header_cursor(self, request: Request) -> Response:
        _reject_repeated_params(request)
        page, nxt = self._window(request.query_params.get("cursor"), 10)
        return JSONResponse(page, headers={"X-Next-Cursor": nxt} if nxt else {})

    async def _needs_cursor(self, request: Request) -> Response:
        _reject_repeated_params(request)
        cursor = request.query_params.get("cursor") or request.headers.get("x-cursor")
        if not cursor:
            raise _BadRequest("cursor is required; send cursor=start for the first page")
        page, nxt = self._window(None if cursor == "start" else cursor, 10)
        return JSONResponse({"data": page, "next_cursor": nxt})

    async def _filtered(self, request: Request) -> Response:
        _reject_repeated_params(request)
        cursor = request.query_params.get("cursor")
        status = request.query_params.get("status")
        if cursor and status:
            raise _BadRequest("status cannot be combined with a cursor")
        if not cursor and not status:
            raise _BadRequest("status is required")
        page, nxt = self._window(cursor, 10)
        return JSONResponse({"data": page, "next_cursor": nxt})

    async def _limit_pair(self, request: Request) -> Response:
        _reject_repeated_params(request)
        first, _, count = request.query_params.get("limit", "").partition(",")
        if not (first.isdigit() and count.isdigit()):
            raise _BadRequest("limit must be OFFSET,COUNT")
        return JSONResponse({"data": self.records[int(first) : int(first) + int(count)]})

    async def _limited(self, request: Request) -> Response:
        now = time.time()
        if now >= self._rate_end:
            self._rate_end, self._rate_used = now + self.rate_window, 0
            self.rate_windows += 1
        reset = now + self.rate_reset_ahead if self.rate_reset_ahead is not None else self._rate_end
        if self._rate_used >= self.rate_budget:
            headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{reset:.3f}"}
            return JSONResponse({"error": True, "reason": "rate limited"}, status_code=429, headers=headers)
        self._rate_used += 1
        left = str(self.rate_budget - self._rate_used)
        headers = {"X-RateLimit-Remaining": left, "X-RateLimit-Reset": f"{reset:.3f}"}
        return JSONResponse({"item": request.query_params.get("item")}, headers=headers)

    async def _numbers(self, request: Request) -> Response:
        _reject_repeated_params(request)
        offset = _int_param(request, "offset", 0, 0, 10**9)
        limit = _int_param(request, "limit", 1000, 1, 5000)
        end = min(offset + limit, self.numbers)
        return JSONResponse({"data": [{"id": n} for n in range(offset + 1, end + 1)]})

    async def _echo(self, request: Request) -> Response:
        raw = await request.body()
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.query_params),
                "headers": dict(request.headers),
                "json": parsed,
                "body": raw.decode("utf-8", errors="replace"),
            }
        )


# -- failure injection as ASGI middleware


# --- incremental (issue 16) ----------------------------------------------------------------------------------
#
# ``Upstream.feed`` (a ``ChangeFeed``): accounts whose records change between runs, for incremental sources.
# Each record is ``{"id", "account", "updated_at" (ISO-8601, UTC, "Z"), "version"}``.
#
# ``GET /inc/{account}/records?updated_since=&offset=0&limit=10&order=asc``
#     ``{"data": [...], "offset"}``: the account's records with ``updated_at >= updated_since`` (ISO-8601, or
#     epoch seconds when all digits; absent: every record; ``updated_before``: and earlier than that), sorted by (updated_at, id) (``order=desc``:
#     newest first; ``order=shuffled``: a fixed shuffle), ``records[offset : offset + min(limit, page_cap)]``:
#     a page-size-capped server (``feed.page_cap``, default 100), so a short page is not the end.
#     An unknown account is 404; ``feed.fail_accounts`` answer 500.
# ``GET /inc/{account}/keyset?updated_since=&limit=10``
#     ``{"data": [...]}``: keyset pagination on the timestamp alone (``updated_at >= updated_since``, at most
#     ``min(limit, page_cap)``): a client that pages by its last record's ``updated_at`` repeats a page when
#     more than a page of records share one timestamp.
# ``GET /inc/{account}/events?sync=&limit=10``
#     Asana-like sync tokens over the account's change events (one per change): with a valid ``sync``,
#     ``{"data": [events after it], "sync": "<token>", "has_more": bool}``; without one, or with one the feed
#     expired (``feed.expire()``) or does not know, 412 ``{"errors": [{"message"}], "sync": "<fresh token>"}``
#     (the fresh token starts at the current end).

FEED_START = datetime(2026, 1, 1, tzinfo=UTC)


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ChangeFeed:
    """Accounts whose records change between runs; see the block's comment for the endpoints."""

    def __init__(self) -> None:
        self.accounts: dict[str, dict[str, dict[str, Any]]] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.page_cap = 100
        self.fail_accounts: set[str] = set()
        self.generation = 1  # tokens of an older generation have expired
        self.clock = FEED_START
        self._lock = threading.Lock()

    def add(self, account: str, count: int, at: datetime | None = None, prefix: str = "r") -> list[str]:
        """``count`` new records in ``account`` (created if new), stamped ``at`` (default: the next second
        each); their ids."""
        with self._lock:
            records = self.accounts.setdefault(account, {})
            ids = []
            for _ in range(count):
                rid = f"{account}-{prefix}{len(records) + 1}"
                self._write(account, rid, at)
                ids.append(rid)
            return ids

    def touch(self, account: str, ids: list[str], at: datetime | None = None) -> None:
        """Change these records (a new version, a new ``updated_at``)."""
        with self._lock:
            for rid in ids:
                self._write(account, rid, at)

    def _write(self, account: str, rid: str, at: datetime | None) -> None:
        if at is None:
            self.clock += timedelta(seconds=1)
        stamp = at or self.clock
        records = self.accounts.setdefault(account, {})
        version = records[rid]["version"] + 1 if rid in records else 1
        records[rid] = {"id": rid, "account": account, "updated_at": _iso(stamp), "version": version}
        self.events.setdefault(account, []).append({"resource": rid, "type": "changed", "version": version})

    def expire(self) -> None:
        """Every sync token handed out so far is too old now."""
        self.generation += 1

    def newest(self, account: str) -> str:
        return max(r["updated_at"] for r in self.accounts[account].values())

    # -- endpoints

    def _records_of(self, request: Request) -> list[dict[str, Any]]:
        account = request.path_params["account"]
        if account in self.fail_accounts:
            raise _BadRequest(f"account {account} is unavailable", 500)
        if account not in self.accounts:
            raise _BadRequest(f"no account {account}", 404)
        since = request.query_params.get("updated_since")
        with self._lock:
            found = list(self.accounts[account].values())
        if since:
            bound = _iso(datetime.fromtimestamp(int(since), UTC)) if since.isdigit() else _since(since)
            found = [r for r in found if r["updated_at"] >= bound]
        before = request.query_params.get("updated_before")
        if before:
            found = [r for r in found if r["updated_at"] < _since(before)]
        return sorted(found, key=lambda r: (r["updated_at"], r["id"]))

    def _cap(self, request: Request) -> int:
        return min(_int_param(request, "limit", 10, 1, 10_000), self.page_cap)

    async def records(self, request: Request) -> Response:
        found = self._records_of(request)
        order = request.query_params.get("order", "asc")
        if order == "desc":
            found.reverse()
        elif order == "shuffled":
            random.Random(7).shuffle(found)
        offset = _int_param(request, "offset", 0, 0, 10_000_000)
        return JSONResponse({"data": found[offset : offset + self._cap(request)], "offset": offset})

    async def keyset(self, request: Request) -> Response:
        return JSONResponse({"data": self._records_of(request)[: self._cap(request)]})

    def _token(self, account: str, position: int) -> str:
        text = f"{account}:{self.generation}:{position}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    def _position(self, account: str, token: str) -> int | None:
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            owner, generation, position = text.split(":")
        except ValueError:
            return None
        if owner != account or int(generation) != self.generation:
            return None
        return int(position)

    async def sync(self, request: Request) -> Response:
        account = request.path_params["account"]
        if account not in self.events:
            raise _BadRequest(f"no account {account}", 404)
        with self._lock:
            events = list(self.events[account])
        token = request.query_params.get("sync")
        position = self._position(account, token) if token else None
        if position is None:
            message = (
                "Sync token invalid or too old. If you are attempting to keep resources in sync, you must"
                " fetch the full dataset for this query now and use the new sync token for the next sync."
            )
            fresh = self._token(account, len(events))
            return JSONResponse({"errors": [{"message": message}], "sync": fresh}, status_code=412)
        page = events[position : position + self._cap(request)]
        end = position + len(page)
        return JSONResponse({"data": page, "sync": self._token(account, end), "has_more": end < len(events)})

    def routes(self, handled: Any) -> list[Route]:
        return [
            Route("/inc/{account}/records", handled(self.records)),
            Route("/inc/{account}/keyset", handled(self.keyset)),
            Route("/inc/{account}/events", handled(self.sync)),
        ]


def _since(text: str) -> str:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _BadRequest(f"updated_since '{text}' is not ISO-8601 or epoch seconds") from None
    return _iso(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))


# --- end incremental (issue 16) ------------------------------------------------------------------------------


@dataclass
class _Captured:
    status: int = 500
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""

    def headers_with_length(self, length: int | None) -> list[tuple[bytes, bytes]]:
        kept = [(k, v) for k, v in self.headers if k.lower() != b"content-length"]
        return kept if length is None else [*kept, (b"content-length", str(length).encode())]


async def _capture(app: ASGIApp, scope: Scope, receive: Receive) -> _Captured:
    captured = _Captured()
    parts: list[bytes] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            captured.status = message["status"]
            captured.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))

    await app(scope, receive, send)
    captured.body = b"".join(parts)
    return captured


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *, length: bool = True
) -> None:
    if length:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _retry_after_value(value: float | str | datetime) -> str:
    if isinstance(value, datetime):
        return format_datetime(value.astimezone(UTC), usegmt=True)
    if isinstance(value, str):
        return value
    return str(max(0, round(value)))


class _FaultMiddleware:
    """Records every request and applies the first matching ``Rule``."""

    def __init__(self, app: ASGIApp, upstream: Upstream) -> None:
        self.app = app
        self.upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query_string = scope.get("query_string", b"").decode("latin-1")
        recorded = RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            query=dict(parse_qsl(query_string, keep_blank_values=True)),
            query_string=query_string,
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
        )
        rule = self.upstream._record(recorded)
        if rule is None:
            await self.app(scope, receive, send)
            return
        if await self.upstream._sleep(rule.delay):
            raise _InjectedReset("server stopping")
        await self._apply(rule, recorded, scope, receive, send)

    async def _apply(
        self, rule: Rule, recorded: RecordedRequest, scope: Scope, receive: Receive, send: Send
    ) -> None:
        json_type = (b"content-type", b"application/json")
        match rule.kind:
            case "delay":
                await self.app(scope, receive, send)
            case "json":
                await _respond(send, rule.status or 200, [json_type], json.dumps(rule.body).encode())
            case "status":
                assert rule.status is not None
                headers = [json_type]
                if rule.retry_after is not None:
                    headers.append((b"retry-after", _retry_after_value(rule.retry_after).encode()))
                body = json.dumps({"error": True, "reason": f"injected {rule.status}"}).encode()
                await _respond(send, rule.status, headers, body)
            case "trickle":
                captured = await _capture(self.app, scope, receive)
                start = {"type": "http.response.start", "status": captured.status}
                await send({**start, "headers": captured.headers_with_length(len(captured.body))})
                size = max(1, rule.chunk_size)
                for offset in range(0, len(captured.body), size):
                    if offset and await self.upstream._sleep(rule.interval):
                        raise _InjectedReset("server stopping")
                    chunk = captured.body[offset : offset + size]
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            case "reset":
                captured = await _capture(self.app, scope, receive)
                start = {"type": "http.response.start", "status": captured.status}
                await send({**start, "headers": captured.headers_with_length(len(captured.body))})
                partial = captured.body[: min(rule.after_bytes, max(0, len(captured.body) - 1))]
                await send({"type": "http.response.body", "body": partial, "more_body": True})
                raise _InjectedReset(f"reset after {len(partial)} bytes")
            case "truncated_json":
                captured = await _capture(self.app, scope, receive)
                body = captured.body[: len(captured.body) // 2]
                await _respond(send, captured.status, captured.headers_with_length(None), body)
            case "malformed_json":
                await _respond(send, 200, [json_type], MALFORMED_JSON)
            case "html":
                headers = [(b"content-type", b"text/html; charset=utf-8")]
                await _respond(send, rule.status or 200, headers, HTML_PAGE)
            case "large":
                await self._large(rule, send)
            case "redirect_loop":
                hop = int(recorded.query.get("_hop", "0")) + 1
                query = urlencode(
                    [*((k, v) for k, v in recorded.query.items() if k != "_hop"), ("_hop", hop)]
                )
                headers = [(b"location", f"{recorded.path}?{query}".encode()), json_type]
                await _respond(send, 302, headers, b'{"redirect": true}')
            case "empty":
                await _respond(send, 200, [json_type], b"")

    async def _large(self, rule: Rule, send: Send) -> None:
        prefix, suffix = b'{"data":"', b'"}'
        filler = rule.size - len(prefix) - len(suffix)
        headers = [(b"content-type", b"application/json")]
        if not rule.chunked:
            await _respond(send, 200, headers, prefix + b"x" * filler + suffix)
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": prefix, "more_body": True})
        block = b"x" * 65536
        while filler > 0:
            piece = block[: min(filler, len(block))]
            filler -= len(piece)
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": suffix, "more_body": False})


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """A started ``Upstream``, stopped after the test."""
    with Upstream() as server:
        yield server

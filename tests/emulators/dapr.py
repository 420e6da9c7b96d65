"""A DAPR sidecar emulator for the test suite, served for real by uvicorn on 127.0.0.1.

``DaprEmulator`` follows the published DAPR HTTP API (paths, status codes, error bodies) closely enough
that ``pullctl`` cannot tell it from a ``daprd`` started with ``dapr run``. The ``dapr_emulator`` fixture
gives a fresh, started one per test (``with DaprEmulator() as dapr: ...`` outside pytest).

Facts checked against the dapr/dapr sources (``pkg/api/http``, ``pkg/messages``, ``pkg/api/errors``,
``tests/integration/suite/daprd/jobs``) and dapr/docs, see DESIGN.md §4a:

Routing
    Every path that matches no API route (or matches one with another method) falls through to service
    invocation, as daprd's ``invoke/*`` route is the chi router's NotFound/MethodNotAllowed handler. With a
    ``dapr-app-id`` header the request goes to that app; without one and outside ``/v1.0/invoke/<id>/method/``
    it is 404 ``ERR_DIRECT_INVOKE`` "failed getting app id either from the URL path or the header
    dapr-app-id". So ``/v1.0/jobs/x`` on a 1.17 sidecar is that 404 too.
Errors
    Legacy errors are ``{"errorCode": ..., "message": ...}``; the newer ones (pub/sub, jobs) add
    ``"details"``: a ``google.rpc.ErrorInfo`` (``reason``, ``domain: dapr.io``, ``metadata``) and, for
    pub/sub, a ``google.rpc.ResourceInfo``. The JSON is compact, ``Content-Type: application/json``.
``GET /v1.0/secrets/{store}/{key}``
    200 ``{key: value}`` (a dict value is returned as is, like a Kubernetes secret with several keys).
    Missing key: 500 ``ERR_SECRET_GET`` "failed getting secret with key K from secret store S: secret K not
    found". Unknown store: **401** ``ERR_SECRET_STORE_NOT_FOUND`` "failed finding secret store with key S".
    No store configured at all (``secrets`` empty): 500 ``ERR_SECRET_STORES_NOT_CONFIGURED``.
``GET /v1.0/secrets/{store}/bulk``
    200 ``{key: {key: value}}`` (so a secret named ``bulk`` cannot be read singly, as in daprd).
``/v1.0/invoke/{app_id}/method/{path}`` (any method), or any unrouted path with ``dapr-app-id``
    Proxied to ``apps[app_id] + "/" + path`` with the raw (still percent-encoded) path, the query string,
    the body and the request headers (``dapr-api-token`` is removed, as daprd's auth middleware does); the
    response status, headers and body stream back chunk by chunk (SSE works; nothing is buffered). Unknown
    app id: 500 ``ERR_DIRECT_INVOKE`` "failed to invoke, id: X, err: couldn't find service: X"; an app that
    refuses the connection: 500 ``ERR_DIRECT_INVOKE`` too.
``POST|PUT /v1.0/publish/{pubsub}/{topic}``
    204 and a ``PublishedMessage`` in ``published``: ``metadata.<k>=<v>`` query parameters become
    ``metadata[k]`` (prefix stripped, as daprd does), the content type defaults to ``text/plain``. No
    pub/sub configured (``pubsubs`` empty): 400 ``ERR_PUBSUB_NOT_CONFIGURED``; unknown name: 404
    ``ERR_PUBSUB_NOT_FOUND`` "pubsub X not found". Fault switches: ``publish_failures = n`` fails the next
    n publishes, ``publish_down = True`` all of them, with 500 ``ERR_PUBSUB_PUBLISH_MESSAGE``.
Jobs: ``POST|GET|DELETE /v1.0-alpha1/jobs/{name}``, and ``/v1.0/jobs/{name}`` from version 1.18
    POST: 204; the body takes ``schedule``, ``dueTime``, ``repeats``, ``ttl``, ``data`` (any JSON),
    ``failurePolicy``, ``overwrite`` (protojson: snake_case names are accepted too, unknown fields ignored).
    ``name`` in the body: 400 ``DAPR_SCHEDULER_JOB_NAME`` "Set the job name in the url only". Neither
    ``schedule`` nor ``dueTime``: 400 ``DAPR_SCHEDULER_SCHEDULE_EMPTY``. From 1.16 an existing name
    without ``"overwrite": true``: 409 (older versions overwrite). A schedule that is not 6-field cron
    (seconds first), ``@every <go duration>``, ``@yearly``/``@annually``/``@monthly``/``@weekly``/
    ``@daily``/``@midnight``/``@hourly``, optionally prefixed ``CRON_TZ=<zone> `` (1.18 only), or a bad
    ``dueTime``/``ttl``: ``DAPR_SCHEDULER_SCHEDULE_JOB`` with status ``invalid_schedule_status`` (400 by
    default: inferred, since 1.16+ answers 409 for the scheduler's AlreadyExists, so it maps gRPC codes; 1.15
    answered 500 "... code = Unknown desc = job failed validation: ...", see dapr/dapr#8384 and
    dapr/dotnet-sdk#1453; pass ``invalid_schedule_status=500`` for that). The 409 body is not documented
    anywhere: ``DAPR_SCHEDULER_SCHEDULE_JOB`` is a best guess. GET: 200 with the job as
    protojson (``name``, ``schedule``, ``repeats``, ``dueTime``, ``ttl``, ``failurePolicy``, and ``data``
    wrapped as ``{"@type": "type.googleapis.com/google.protobuf.Value", "value": ...}``); a missing job
    is **500** ``DAPR_SCHEDULER_GET_JOB``. DELETE: 204, also for a missing job. There is no list route.
    ``jobs`` maps name to the stored job with ``data`` unwrapped. ``trigger(name)`` / ``trigger_sync(name)``
    POST the job's ``data`` as JSON to ``job_app_url + "/job/" + name``, as the scheduler does, and return
    ``JobTriggerResult(status, body)``.
``POST /v1.0/shutdown``
    204; counts ``shutdown_called``. Other methods fall through to invocation.
``GET /v1.0/healthz``, ``GET /v1.0/healthz/outbound``
    204 (no token needed even with ``api_token``).
``GET /v1.0/metadata``
    200 ``{"id": app_id, "runtimeVersion": ..., "enabledFeatures": [], "components": [...], "extended": {}}``.
``api_token``
    When set, every request but the two health checks needs ``dapr-api-token: <token>``, else 401
    ``text/plain`` ``invalid api token`` (Go's ``http.Error``).

Recording: every request lands in ``requests`` as a ``RecordedRequest`` that unpacks as
``(method, path, headers, body)`` (``headers`` has lower-case names; ``.query`` holds the query string).
``reset()`` clears the recordings, the jobs, ``shutdown_called`` and the fault switches; configuration
(``secrets``, ``apps``, ``pubsubs``, ``api_token``, ...) stays.

Example::

    with DaprEmulator(secrets={"vault": {"api-key": "s3cret"}}, pubsubs={"events"}) as dapr:
        dapr.apps["plantation-mcp"] = mcp_server.url
        dapr.job_app_url = serve_url
        ...
        assert dapr.published[0].metadata["cloudevent.id"] == document_id
"""

from __future__ import annotations

import asyncio
import json
import re
import zoneinfo
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote, unquote

import anyio
import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from pullctl.asgi import BackgroundServer

__all__ = [
    "DaprEmulator",
    "JobTriggerResult",
    "PublishedMessage",
    "RecordedRequest",
    "dapr_emulator",
]

VALUE_TYPE_URL = "type.googleapis.com/google.protobuf.Value"
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
RESOURCE_INFO_TYPE = "type.googleapis.com/google.rpc.ResourceInfo"
NO_APP_ID_MESSAGE = "failed getting app id either from the URL path or the header dapr-app-id"

# Not forwarded in either direction: hop-by-hop headers, and those the next hop sets itself.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED_TO_APP = _HOP_BY_HOP | {"host", "content-length", "dapr-api-token"}
_NOT_RETURNED_TO_CALLER = _HOP_BY_HOP | {"date", "server"}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator received it; unpacks as ``(method, path, headers, body)``."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: str = ""
    peer: tuple[str, int] | None = None  # the client's address: one connection reused keeps one port

    def __iter__(self) -> Iterator[Any]:
        return iter((self.method, self.path, self.headers, self.body))

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class PublishedMessage:
    """A successful ``POST /v1.0/publish/{pubsub}/{topic}``."""

    pubsub: str
    topic: str
    content_type: str
    metadata: dict[str, str]
    data: Any
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class JobTriggerResult(NamedTuple):
    """What the app answered to a job trigger."""

    status: int
    body: bytes


class _JobRejected(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class _InvalidSchedule(Exception):
    pass


# --------------------------------------------------------------------------------------------------------
# Error bodies


def _json_response(status: int, payload: Any) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json")


def _api_error(status: int, code: str, message: str) -> Response:
    """A ``messages.APIError`` body: ``{"errorCode", "message"}``."""
    return _json_response(status, {"errorCode": code, "message": message})


def _kit_error(
    status: int,
    message: str,
    reason: str,
    *,
    tag: str = "",
    metadata: Mapping[str, str] | None = None,
    resource: tuple[str, str] | None = None,
) -> Response:
    """A ``dapr/kit/errors`` body: ``errorCode`` is the legacy tag, else the ErrorInfo reason."""
    details: list[dict[str, Any]] = [
        {"@type": ERROR_INFO_TYPE, "reason": reason, "domain": "dapr.io", "metadata": dict(metadata or {})}
    ]
    if resource is not None:
        details.append(
            {
                "@type": RESOURCE_INFO_TYPE,
                "resource_type": resource[0],
                "resource_name": resource[1],
                "owner": "",
                "description": message,
            }
        )
    return _json_response(status, {"errorCode": tag or reason, "message": message, "details": details})


# --------------------------------------------------------------------------------------------------------
# Schedules (go-etcd-cron: robfig/cron with a seconds field)

_GO_DURATION = re.compile(r"[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+|[+-]?0")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_ISO_DURATION = re.compile(
    r"P(?=.)(?:\d+Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T(?=\d)(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?"
)
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")
_DESCRIPTORS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {m: i for i, m in enumerate(_MONTH_NAMES, start=1)}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (name, low, high, names, "?" allowed)
_CRON_FIELDS: tuple[tuple[str, int, int, Mapping[str, int], bool], ...] = (
    ("second", 0, 59, {}, False),
    ("minute", 0, 59, {}, False),
    ("hour", 0, 23, {}, False),
    ("day of month", 1, 31, {}, True),
    ("month", 1, 12, _MONTHS, False),
    ("day of week", 0, 6, _DAYS, True),
)


def _go_duration_seconds(text: str) -> float | None:
    """Seconds in a Go ``time.ParseDuration`` string, or None when it is not one."""
    if not _GO_DURATION.fullmatch(text):
        return None
    sign = -1.0 if text.startswith("-") else 1.0
    total = sum(
        float(num) * _GO_UNITS[unit] for num, unit in re.findall(r"(\d+\.?\d*|\.\d+)([a-zµμ]+)", text)
    )
    return sign * total


def _check_cron_value(token: str, low: int, high: int, names: Mapping[str, int]) -> int:
    value = names.get(token.lower())
    if value is None:
        if not token.isdigit():
            raise _InvalidSchedule(
                f"failed to parse int from {token}: strconv.Atoi: parsing {token!r}: invalid syntax"
            )
        value = int(token)
    if not low <= value <= high:
        raise _InvalidSchedule(f"value {value} out of range ({low} - {high}): {token}")
    return value


def _check_cron_field(expr: str, spec: tuple[str, int, int, Mapping[str, int], bool]) -> None:
    _name, low, high, names, question_ok = spec
    for part in expr.split(","):
        base, slash, step = part.partition("/")
        if slash and (not step.isdigit() or int(step) == 0):
            raise _InvalidSchedule(f"invalid step in {part}")
        if base == "*" or (base == "?" and question_ok):
            continue
        start_text, dash, end_text = base.partition("-")
        start = _check_cron_value(start_text, low, high, names)
        end = _check_cron_value(end_text, low, high, names) if dash else start
        if start > end:
            raise _InvalidSchedule(f"beginning of range ({start}) beyond end of range ({end}): {part}")


def validate_schedule(schedule: str, *, cron_tz: bool) -> None:
    """Raise ``_InvalidSchedule`` unless ``schedule`` is one daprd's scheduler accepts."""
    spec = schedule.strip()
    if cron_tz and spec.startswith(("CRON_TZ=", "TZ=")):
        zone, _, spec = spec.partition("=")[2].partition(" ")
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise _InvalidSchedule(f"provided bad location {zone}: unknown time zone {zone}") from exc
        spec = spec.strip()
    if spec.startswith("@"):
        if spec in _DESCRIPTORS:
            return
        if spec.startswith("@every "):
            duration = _go_duration_seconds(spec.removeprefix("@every ").strip())
            if duration is None or duration <= 0:
                raise _InvalidSchedule(f"failed to parse duration {spec}")
            return
        raise _InvalidSchedule(f"unrecognized descriptor: {spec}")
    fields = spec.split()
    if len(fields) != len(_CRON_FIELDS):
        raise _InvalidSchedule(f"expected exactly 6 fields, found {len(fields)}: [{' '.join(fields)}]")
    for expr, field_spec in zip(fields, _CRON_FIELDS, strict=True):
        _check_cron_field(expr, field_spec)


def _validate_time(value: str, what: str) -> None:
    """``dueTime``/``ttl``: RFC 3339, a Go duration, or an ISO 8601 duration."""
    if _RFC3339.fullmatch(value) or _ISO_DURATION.fullmatch(value) or _go_duration_seconds(value) is not None:
        return
    raise _InvalidSchedule(f"{what}: unsupported time format: {value}")


def _parse_version(version: str) -> tuple[int, int]:
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?(?:-.*)?", version)
    if match is None:
        raise ValueError(f"version must look like '1.18' or '1.17.4', got {version!r}")
    return int(match[1]), int(match[2])


# --------------------------------------------------------------------------------------------------------
# The emulator


class DaprEmulator:
    """A DAPR sidecar on ``http://127.0.0.1:<port>``: secrets, invocation, pub/sub, jobs, shutdown."""

    def __init__(
        self,
        *,
        app_id: str = "pullctl",
        version: str = "1.18",
        secrets: Mapping[str, Mapping[str, str | Mapping[str, str]]] | None = None,
        pubsubs: set[str] | frozenset[str] | list[str] | tuple[str, ...] = ("pubsub",),
        apps: Mapping[str, str] | None = None,
        api_token: str | None = None,
        job_app_url: str | None = None,
        app_token: str | None = None,
        namespace: str = "",
        invalid_schedule_status: int = 400,
        port: int = 0,
    ) -> None:
        self._version = _parse_version(version)
        self.version = version
        self.app_id = app_id
        self.namespace = namespace
        self.secrets: dict[str, dict[str, str | Mapping[str, str]]] = {
            store: dict(values) for store, values in (secrets or {}).items()
        }
        self.pubsubs: set[str] = set(pubsubs)
        self.apps: dict[str, str] = dict(apps or {})
        self.api_token = api_token
        self.job_app_url = job_app_url
        self.app_token = app_token  # sent as dapr-api-token on job callbacks, as daprd does
        self.invalid_schedule_status = invalid_schedule_status
        self.port = port

        self.requests: list[RecordedRequest] = []
        self.published: list[PublishedMessage] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.shutdown_called = 0
        self.publish_failures = 0
        self.publish_down = False

        self._server: BackgroundServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None
        self._streams: set[httpx.Response] = set()
        self.app = _DaprApp(self)

    # -- lifecycle ---------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the DAPR emulator is not running: call start() first")
        return self._server.url

    @property
    def jobs_v1_stable(self) -> bool:
        """Whether ``/v1.0/jobs`` exists (DAPR 1.18+); ``/v1.0-alpha1/jobs`` always does."""
        return self._version >= (1, 18)

    def start(self) -> DaprEmulator:
        if self._server is not None:
            raise RuntimeError(f"the DAPR emulator already runs on {self._server.url}")
        self._server = BackgroundServer(self.app, port=self.port).start()
        return self

    def stop(self) -> None:
        """Stop serving; open proxied streams are ended first, so uvicorn does not wait for them."""
        server, self._server = self._server, None
        if server is None:
            return
        loop = self._loop
        if loop is not None and self._streams and not loop.is_closed():
            future = asyncio.run_coroutine_threadsafe(self._end_streams(), loop)
            future.result(timeout=10)
        server.stop()

    def __enter__(self) -> DaprEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget requests, publishes, jobs, shutdowns and fault switches; keep the configuration."""
        self.requests.clear()
        self.published.clear()
        self.jobs.clear()
        self.shutdown_called = 0
        self.publish_failures = 0
        self.publish_down = False

    async def _end_streams(self) -> None:
        for upstream in list(self._streams):
            await upstream.aclose()

    # -- job triggers (what the scheduler does) ----------------------------------------------------------

    def _trigger_request(self, name: str) -> tuple[str, bytes]:
        if self.job_app_url is None:
            raise RuntimeError("set DaprEmulator.job_app_url (the app's base URL) before triggering a job")
        if name not in self.jobs:
            raise LookupError(f"no DAPR job named {name!r}; known jobs: {sorted(self.jobs)}")
        job = self.jobs[name]
        body = json.dumps(job["data"]).encode() if "data" in job else b""
        return f"{self.job_app_url.rstrip('/')}/job/{quote(name, safe='')}", body

    async def trigger(self, name: str) -> JobTriggerResult:
        """POST the job's ``data`` to the app's ``/job/{name}``; return the app's answer."""
        url, body = self._trigger_request(name)
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            response = await client.post(url, content=body, headers=self._callback_headers())
        return JobTriggerResult(response.status_code, response.content)

    def trigger_sync(self, name: str) -> JobTriggerResult:
        """``trigger`` for synchronous tests."""
        url, body = self._trigger_request(name)
        with httpx.Client(trust_env=False, timeout=30) as client:
            response = client.post(url, content=body, headers=self._callback_headers())
        return JobTriggerResult(response.status_code, response.content)

    def _callback_headers(self) -> dict[str, str]:
        """What daprd sends the app: JSON, and ``dapr-api-token: <app token>`` when the app token is set
        (``dapr.io/app-token-secret``; ``APP_API_TOKEN`` in the sidecar's environment)."""
        headers = {"content-type": "application/json"}
        if self.app_token is not None:
            headers["dapr-api-token"] = self.app_token
        return headers


class _DaprApp:
    """The ASGI app; a route table in front of the service-invocation fallback, as daprd's chi router."""

    def __init__(self, emulator: DaprEmulator) -> None:
        self.dapr = emulator
        secret = r"/v1\.0/secrets/(?P<store>[^/]+)"
        jobs = r"/v1\.0-alpha1/jobs/(?P<name>[^/]+)"
        stable_jobs = r"/v1\.0/jobs/(?P<name>[^/]+)"
        self.routes: list[tuple[frozenset[str], re.Pattern[str], Any]] = [
            (frozenset({"GET"}), re.compile(r"/v1\.0/healthz"), self.healthz),
            (frozenset({"GET"}), re.compile(r"/v1\.0/healthz/outbound"), self.healthz),
            (frozenset({"GET"}), re.compile(r"/v1\.0/metadata"), self.metadata),
            (frozenset({"POST"}), re.compile(r"/v1\.0/shutdown"), self.shutdown),
            (frozenset({"GET"}), re.compile(secret + r"/bulk"), self.bulk_secrets),
            (frozenset({"GET"}), re.compile(secret + r"/(?P<key>[^/]+)"), self.get_secret),
            (
                frozenset({"POST", "PUT"}),
                re.compile(r"/v1\.0/publish/(?P<pubsub>[^/]+)/(?P<topic>.+)"),
                self.publish,
            ),
            (frozenset({"POST"}), re.compile(jobs), self.schedule_job),
            (frozenset({"GET"}), re.compile(jobs), self.get_job),
            (frozenset({"DELETE"}), re.compile(jobs), self.delete_job),
        ]
        self.stable_job_routes: list[tuple[frozenset[str], re.Pattern[str], Any]] = [
            (frozenset({"POST"}), re.compile(stable_jobs), self.schedule_job),
            (frozenset({"GET"}), re.compile(stable_jobs), self.get_job),
            (frozenset({"DELETE"}), re.compile(stable_jobs), self.delete_job),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        if scope["type"] != "http":  # pragma: no cover - websockets are not part of the DAPR HTTP API
            return
        request = Request(scope, receive)
        response = await self.handle(request)
        await response(scope, receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.dapr._loop = asyncio.get_running_loop()
                timeout = httpx.Timeout(30.0, read=None)
                self.dapr._client = httpx.AsyncClient(
                    trust_env=False, timeout=timeout, follow_redirects=False
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.dapr._client is not None:
                    await self.dapr._client.aclose()
                    self.dapr._client = None
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        headers = {name: ", ".join(request.headers.getlist(name)) for name in request.headers}
        path = request.url.path
        peer = (request.client.host, request.client.port) if request.client else None
        self.dapr.requests.append(
            RecordedRequest(request.method, path, headers, body, request.url.query, peer)
        )

        if self.dapr.api_token is not None and request.headers.get("dapr-api-token") != self.dapr.api_token:
            health = request.method == "GET" and path.rstrip("/") in (
                "/v1.0/healthz",
                "/v1.0/healthz/outbound",
            )
            if not health:
                # Go's http.Error: plain text, a trailing newline.
                return Response(
                    b"invalid api token\n",
                    status_code=401,
                    headers={"x-content-type-options": "nosniff"},
                    media_type="text/plain; charset=utf-8",
                )

        routes = self.routes + (self.stable_job_routes if self.dapr.jobs_v1_stable else [])
        stripped = path.rstrip("/") or "/"
        for methods, pattern, handler in routes:
            match = pattern.fullmatch(stripped)
            if match is not None and request.method in methods:
                response: Response = await handler(request, body, **match.groupdict())
                return response
        return await self.invoke(request, body)

    # -- health, metadata, shutdown ----------------------------------------------------------------------

    async def healthz(self, request: Request, body: bytes) -> Response:
        return Response(status_code=204)

    async def metadata(self, request: Request, body: bytes) -> Response:
        components = [
            {"name": name, "type": "pubsub.in-memory", "version": "v1", "capabilities": []}
            for name in sorted(self.dapr.pubsubs)
        ] + [
            {"name": name, "type": "secretstores.local.file", "version": "v1", "capabilities": []}
            for name in sorted(self.dapr.secrets)
        ]
        return _json_response(
            200,
            {
                "id": self.dapr.app_id,
                "runtimeVersion": self.dapr.version,
                "enabledFeatures": [],
                "components": components,
                "extended": {},
            },
        )

    async def shutdown(self, request: Request, body: bytes) -> Response:
        self.dapr.shutdown_called += 1
        return Response(status_code=204)

    # -- secrets -----------------------------------------------------------------------------------------

    def _secret_store(self, store: str) -> dict[str, str | Mapping[str, str]] | Response:
        if not self.dapr.secrets:
            return _api_error(500, "ERR_SECRET_STORES_NOT_CONFIGURED", "secret store is not configured")
        if store not in self.dapr.secrets:
            return _api_error(
                401, "ERR_SECRET_STORE_NOT_FOUND", f"failed finding secret store with key {store}"
            )
        return self.dapr.secrets[store]

    @staticmethod
    def _secret_value(key: str, value: str | Mapping[str, str]) -> dict[str, str]:
        return {key: value} if isinstance(value, str) else dict(value)

    async def get_secret(self, request: Request, body: bytes, store: str, key: str) -> Response:
        found = self._secret_store(store)
        if isinstance(found, Response):
            return found
        if key not in found:
            message = (
                f"failed getting secret with key {key} from secret store {store}: secret {key} not found"
            )
            return _api_error(500, "ERR_SECRET_GET", message)
        return _json_response(200, self._secret_value(key, found[key]))

    async def bulk_secrets(self, request: Request, body: bytes, store: str) -> Response:
        found = self._secret_store(store)
        if isinstance(found, Response):
            return found
        return _json_response(200, {key: self._secret_value(key, value) for key, value in found.items()})

    # -- pub/sub -----------------------------------------------------------------------------------------

    async def publish(self, request: Request, body: bytes, pubsub: str, topic: str) -> Response:
        query = parse_qsl(request.url.query, keep_blank_values=True)
        metadata = {k.removeprefix("metadata."): v for k, v in query if k.startswith("metadata.")}
        resource = ("pubsub.in-memory", pubsub)
        if not self.dapr.pubsubs:
            return _kit_error(
                400,
                "pubsub is not configured",
                "DAPR_PUBSUB_NOT_CONFIGURED",
                tag="ERR_PUBSUB_NOT_CONFIGURED",
                metadata=metadata,
                resource=resource,
            )
        if pubsub not in self.dapr.pubsubs:
            return _kit_error(
                404,
                f"pubsub {pubsub} not found",
                "DAPR_PUBSUB_NOT_FOUND",
                tag="ERR_PUBSUB_NOT_FOUND",
                metadata=metadata,
                resource=resource,
            )
        if self.dapr.publish_down or self.dapr.publish_failures > 0:
            if not self.dapr.publish_down:
                self.dapr.publish_failures -= 1
            error = "connection refused (injected by the DAPR emulator)"
            return _kit_error(
                500,
                f"error when publishing to topic {topic} in pubsub {pubsub}: {error}",
                "DAPR_PUBSUB_PUBLISH_MESSAGE",
                tag="ERR_PUBSUB_PUBLISH_MESSAGE",
                metadata={"topic": topic, "error": error},
                resource=resource,
            )
        content_type = request.headers.get("content-type") or "text/plain"
        self.dapr.published.append(
            PublishedMessage(
                pubsub=pubsub,
                topic=topic,
                content_type=content_type,
                metadata=metadata,
                data=_decode_payload(content_type, body),
                body=body,
                headers={name: request.headers[name] for name in request.headers},
            )
        )
        return Response(status_code=204)

    # -- jobs --------------------------------------------------------------------------------------------

    def _scheduler_error(self, status: int, message: str, reason: str) -> Response:
        metadata = {"appID": self.dapr.app_id, "namespace": self.dapr.namespace}
        return _kit_error(status, message, reason, metadata=metadata)

    def _parse_job(self, name: str, body: bytes) -> dict[str, Any]:
        """The stored job (``data`` plain), or ``_JobRejected`` with daprd's answer."""
        try:
            raw = json.loads(body) if body.strip() else {}
        except ValueError as exc:
            message = f"failed deserializing HTTP body: {exc}"
            raise _JobRejected(_api_error(400, "ERR_MALFORMED_REQUEST", message)) from None
        if not isinstance(raw, dict):
            message = "failed deserializing HTTP body: proto: syntax error: unexpected token"
            raise _JobRejected(_api_error(400, "ERR_MALFORMED_REQUEST", message))

        def pick(camel: str, snake: str) -> Any:
            return raw.get(camel, raw.get(snake))

        if raw.get("name"):
            raise _JobRejected(
                self._scheduler_error(400, "Set the job name in the url only", "DAPR_SCHEDULER_JOB_NAME")
            )
        if not name.strip() or "|" in name:
            raise _JobRejected(self._scheduler_error(400, "Name is empty", "DAPR_SCHEDULER_JOB_NAME_EMPTY"))
        job: dict[str, Any] = {"name": name}
        for key, snake in (("schedule", "schedule"), ("dueTime", "due_time"), ("ttl", "ttl")):
            value = pick(key, snake)
            if value is not None:
                if not isinstance(value, str):
                    message = f"failed deserializing HTTP body: proto: invalid value for string field {snake}"
                    raise _JobRejected(_api_error(400, "ERR_MALFORMED_REQUEST", message))
                job[key] = value
        repeats = raw.get("repeats")
        if repeats is not None:
            try:
                job["repeats"] = int(repeats)
            except (TypeError, ValueError):
                message = "failed deserializing HTTP body: proto: invalid value for uint32 field repeats"
                raise _JobRejected(_api_error(400, "ERR_MALFORMED_REQUEST", message)) from None
        if "data" in raw:
            job["data"] = raw["data"]
        policy = pick("failurePolicy", "failure_policy")
        if policy is not None:
            job["failurePolicy"] = _camel_keys(policy)
        if "schedule" not in job and "dueTime" not in job:
            raise _JobRejected(
                self._scheduler_error(400, "Schedule is empty", "DAPR_SCHEDULER_SCHEDULE_EMPTY")
            )
        try:
            if "schedule" in job:
                validate_schedule(job["schedule"], cron_tz=self.dapr.jobs_v1_stable)
            for key in ("dueTime", "ttl"):
                if key in job:
                    _validate_time(job[key], key)
        except _InvalidSchedule as exc:
            status = self.dapr.invalid_schedule_status
            code = "InvalidArgument" if status == 400 else "Unknown"
            message = (
                f"failed to schedule job due to: rpc error: code = {code} desc = job failed validation: {exc}"
            )
            raise _JobRejected(
                self._scheduler_error(status, message, "DAPR_SCHEDULER_SCHEDULE_JOB")
            ) from None
        overwrite = raw.get("overwrite") is True
        if name in self.dapr.jobs and not overwrite and self.dapr._version >= (1, 16):
            message = (
                "failed to schedule job due to: rpc error: code = AlreadyExists "
                f"desc = job already exists: {name}"
            )
            raise _JobRejected(self._scheduler_error(409, message, "DAPR_SCHEDULER_SCHEDULE_JOB"))
        return job

    async def schedule_job(self, request: Request, body: bytes, name: str) -> Response:
        try:
            job = self._parse_job(name, body)
        except _JobRejected as rejected:
            return rejected.response
        self.dapr.jobs[name] = job
        return Response(status_code=204)

    async def get_job(self, request: Request, body: bytes, name: str) -> Response:
        job = self.dapr.jobs.get(name)
        if job is None:
            message = f"failed to get job due to: rpc error: code = Unknown desc = job not found: {name}"
            return self._scheduler_error(500, message, "DAPR_SCHEDULER_GET_JOB")
        rendered: dict[str, Any] = {"name": name}
        for key in ("schedule", "repeats", "dueTime", "ttl"):
            if key in job:
                rendered[key] = job[key]
        if "data" in job:
            rendered["data"] = {"@type": VALUE_TYPE_URL, "value": job["data"]}
        if "failurePolicy" in job:
            rendered["failurePolicy"] = job["failurePolicy"]
        return _json_response(200, rendered)

    async def delete_job(self, request: Request, body: bytes, name: str) -> Response:
        self.dapr.jobs.pop(name, None)
        return Response(status_code=204)

    # -- service invocation ------------------------------------------------------------------------------

    async def invoke(self, request: Request, body: bytes) -> Response:
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        app_id, method = _target_and_method(raw_path.decode("latin-1").split("?", 1)[0], request.headers)
        if not app_id:
            return _api_error(404, "ERR_DIRECT_INVOKE", NO_APP_ID_MESSAGE)
        base = self.dapr.apps.get(app_id)
        if base is None:
            return _api_error(
                500,
                "ERR_DIRECT_INVOKE",
                f"failed to invoke, id: {app_id}, err: couldn't find service: {app_id}",
            )
        client = self.dapr._client
        assert client is not None, "the emulator's HTTP client is created at lifespan startup"
        url = f"{base.rstrip('/')}/{method.lstrip('/')}"
        if request.url.query:
            url = f"{url}?{request.url.query}"
        headers = [
            (name, value) for name, value in request.headers.items() if name not in _NOT_FORWARDED_TO_APP
        ]
        upstream_request = httpx.Request(request.method, url, headers=headers, content=body)
        try:
            upstream = await client.send(upstream_request, stream=True)
        except httpx.HTTPError as exc:
            return _api_error(500, "ERR_DIRECT_INVOKE", f"failed to invoke, id: {app_id}, err: {exc!r}")
        self.dapr._streams.add(upstream)

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            except (httpx.HTTPError, httpx.StreamError, anyio.ClosedResourceError):
                return  # ended by stop(), or the app hung up: end the response here
            finally:
                with anyio.CancelScope(shield=True):
                    await upstream.aclose()
                self.dapr._streams.discard(upstream)

        response = StreamingResponse(relay(), status_code=upstream.status_code)
        response.raw_headers = [
            (name, value)
            for name, value in upstream.headers.raw
            if name.decode("latin-1").lower() not in _NOT_RETURNED_TO_CALLER
        ]
        return response


def _target_and_method(raw_path: str, headers: Mapping[str, str]) -> tuple[str, str]:
    """daprd's ``findTargetIDAndMethod``: the ``dapr-app-id`` header, else ``/v1.0/invoke/<id>/method/``."""
    app_id = headers.get("dapr-app-id", "")
    if app_id:
        return app_id, raw_path.lstrip("/")
    prefix = "/v1.0/invoke/"
    if raw_path.startswith(prefix):
        rest = raw_path[len(prefix) :].lstrip("/")
        index = rest.find("/method/")
        if index > 0:
            return unquote(rest[:index]), rest[index + len("/method/") :]
    return "", ""


def _camel_keys(value: Any) -> Any:
    """protojson accepts snake_case field names and prints lowerCamelCase ones."""
    if isinstance(value, dict):
        return {
            re.sub(r"_([a-z])", lambda m: m[1].upper(), str(key)): _camel_keys(item)
            for key, item in value.items()
        }
    return value


def _decode_payload(content_type: str, body: bytes) -> Any:
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        try:
            return json.loads(body)
        except ValueError:
            pass
    return body.decode("utf-8", errors="replace")


@pytest.fixture
def dapr_emulator() -> Iterator[DaprEmulator]:
    """A started ``DaprEmulator`` (1.18, pub/sub ``pubsub``, no secrets, no apps), stopped after the test."""
    with DaprEmulator() as emulator:
        yield emulator

"""Fetching one item: every page its paginator asks for, each page with the retry loop, auth and rate limit.

The pieces, top-down: ``Fetcher.pages`` walks an item's pages (``pagination.py`` says what comes next
and when the item ends); ``_fetch`` runs one page's attempts (``retry.py`` decides, ``transport.py``
names what failed on the wire); ``_attempt`` is one bounded exchange: ``timeout_seconds`` bounds it as a
whole (connect to last byte, so a trickling body cannot hang it) and ``max_response_bytes`` its body
(streamed, never read past the cap). Redirects are followed by hand, at most five, and credentials (the auth
secret, and a request that carries a ``{secret.NAME}``) never go to another origin than the configured one
(nor do next pages). With ``auth_type`` oauth2 or session the run's ``TokenManager`` (``auth.py``) gives each
request its token; a 401 renews it once for every worker and the request is sent once more.

A ``response.format`` other than JSON (``formats.py``) is parsed as the body arrives; with ``records.split``
and no pagination the rows stream out as parts of one page (``Page.part``), so a report of any size is
never held. A job's create, poll and download calls (``jobs.py``) go through the same attempts, each a
``Call`` that says how it differs from a page of the source's own request. What a response means and how
its body is read into a ``Page``: ``reader.py``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from pullctl.config import templates
from pullctl.config.models import PAGE_VARIABLE, ROW_FORMATS, SourceConfig
from pullctl.config.paths import describe
from pullctl.errors import FetchError
from pullctl.pipeline.documents import RequestCounts
from pullctl.redact import Redactor
from pullctl.retry import AttemptFailed, GaveUp, Outcome, call_with_retries
from pullctl.run.auth import Grant, TokenManager
from pullctl.run.pagination import PageRequest, PageView, PaginationError, paginator
from pullctl.run.plan import FetchTask
from pullctl.run.reader import Call, Ended, Page, ResponseReader, final
from pullctl.run.transport import TRANSPORT_ERRORS, Pool, plain_url
from pullctl.transport_errors import host_of, transport_failure

MAX_REDIRECTS = 5
USER_AGENT = "pullctl/0.1 (+https://github.com/pullctl/pullctl)"
# Configured headers replace these (by name, any case); JSON is preferred, anything is accepted (never a 406).
DEFAULT_HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": "application/json, */*;q=0.5",
    "Accept-Encoding": "gzip, deflate",
}


class RateLimiter:
    """Requests per second shared by every parallel fetch of a run (evenly spaced slots), and the API's own
    budget (``rate_limit.remaining_header``): when it is spent, every worker waits for the one reset; a reset
    beyond ``max_retry_after_seconds`` fails the items still to come with one reason instead of hanging."""

    def __init__(
        self,
        per_second: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self._next = 0.0
        self._clock = clock
        self._sleep = sleep
        self._paused_until = 0.0
        self.blocked: str | None = None  # why no more requests are sent in this run

    def pause(self, seconds: float) -> bool:
        """The budget is spent: no request until ``seconds`` from now (the latest reset wins). True when this
        starts a new wait (for one log line per wait, not one per worker)."""
        now = self._clock()
        starts = self._paused_until <= now
        self._paused_until = max(self._paused_until, now + seconds)
        return starts

    async def acquire(self) -> None:
        if self.blocked is not None:
            raise FetchError(self.blocked, 0)
        if self._paused_until > self._clock():
            await self._sleep(self._paused_until - self._clock())
        if not self.interval:
            return
        now = self._clock()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await self._sleep(slot - now)


def with_query(url: str, params: Mapping[str, str] | None) -> str:
    """``url`` with ``params`` merged into its query (a name already there takes the new value), encoded as
    httpx encodes ``params=``. A URL without a query (the common case) takes no URL parse here."""
    if not params:
        return url
    if "?" not in url and "#" not in url:
        return f"{url}?{urlencode(params)}"
    return str(httpx.URL(url).copy_merge_params(dict(params)))


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _page_templated(config: SourceConfig) -> bool:
    """Whether the request names ``{page.number}``, ``{page.offset}`` or ``{page.cursor}`` anywhere."""
    ing = config.ingestion
    if ing.request is None:
        return False
    fields = (fld for _, value in ing.template_places() for fld in templates.template_fields(value))
    return any(fld.root == PAGE_VARIABLE for fld in fields)


#: ``Fetcher.pages``'s hook: (status, parsed body, records or None, stored) for every response that continues
#: or ends an item (kept pages, an empty last page, and, not stored, one an ``end`` rule matched).
Observe = Callable[[int, Any, "list[Any] | None", bool], None]


class _Refused(Exception):
    """The API answered 401 to a request with the run's token: renew it (once for every worker), retry."""

    def __init__(self, grant: Grant) -> None:
        super().__init__("401")
        self.grant = grant


class Fetcher:
    def __init__(
        self,
        config: SourceConfig,
        transport: httpx.AsyncBaseTransport,
        secret: str | None,
        redact: Redactor,
        counts: RequestCounts,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        concurrency: int = 1,
        create_jobs: bool = True,
        tokens: TokenManager | None = None,
    ) -> None:
        """``tokens``: the run's token for ``auth_type`` oauth2 or session (run/auth.py), else None."""
        assert config.ingestion.request is not None
        self.create_jobs = create_jobs  # False: a dry run, which creates no report job (it can cost money)
        self.request = config.ingestion.request
        self.policy = config.ingestion.retry
        self.pagination = config.ingestion.pagination
        self.page_templated = _page_templated(config)
        self.records_path = config.ingestion.records_path
        records = config.ingestion.records
        self.split = records is not None and records.split
        self.transport = transport
        self.redact = redact
        self.counts = counts
        self.limiter = limiter or RateLimiter(config.ingestion.rate_limit.requests_per_second)
        self.reader = ResponseReader(config, redact, self.limiter, concurrency)  # response -> Page
        self._sleep = sleep
        self._rng = rng
        self._auth_headers, self._auth_params = self._auth(secret)
        self.tokens = tokens
        carriers = (self.request.parameters, self.request.headers, self.request.body)
        self._sends_named_secret = any(
            f.root == templates.SECRET_VARIABLE for f in templates.template_fields(list(carriers))
        )
        self._headers = self._merge_headers({})
        response = config.ingestion.response
        self.format = response.format if response is not None else "json"
        self.job = config.ingestion.job
        streams = self.format in ROW_FORMATS and self.split and self.pagination.type == "none"
        self.page_call = Call(response=response, stream=streams)  # a page of the source's own request

    def _merge_headers(self, configured: dict[str, str]) -> httpx.Headers:
        """The defaults, then the configured headers, then the credential: a later one replaces an earlier one
        of the same name in any case (``accept`` replaces ``Accept``)."""
        headers = httpx.Headers(DEFAULT_HEADERS)
        headers.update(configured)
        headers.update(self._auth_headers)
        return headers

    def _auth(self, secret: str | None) -> tuple[dict[str, str], dict[str, str]]:
        req = self.request
        if req.auth_type == "none" or secret is None:
            return {}, {}
        if req.auth_type == "bearer":
            return {"Authorization": f"Bearer {secret}"}, {}
        if req.auth_type == "basic":
            if ":" not in secret:  # an API key as the user name, no password (Freshdesk, Stripe, PrestaShop)
                secret += ":"
                self.redact.add(secret)  # its base64 form is what the header carries
            return {"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}, {}
        if req.auth_query_param:
            return {}, {req.auth_query_param: secret}
        return {req.auth_header: secret}, {}

    @property
    def _has_credentials(self) -> bool:
        has_token = self.tokens is not None
        return bool(self._auth_headers or self._auth_params) or self._sends_named_secret or has_token

    # -- one item, every page -------------------------------------------------------------------------

    async def pages(self, task: FetchTask, observe: Observe | None = None) -> AsyncIterator[Page]:
        """Every page of ``task`` worth keeping; raises ``FetchError`` when the item fails. ``observe`` sees
        every response that continues or ends the item (incremental state reads it)."""
        if self.job is not None:
            from pullctl.run.jobs import job_pages

            async for page in job_pages(self, self.job, task):
                yield page
            return
        pager = paginator(self.pagination, self.records_path, self.page_templated)
        request: PageRequest | None = pager.first(
            PageRequest(task.url, task.params, 1, task.headers, task.body)
        )
        while request is not None:
            try:
                page = await self._fetch(request, task, self.page_call)
            except Ended as ended:
                if observe is not None:
                    with contextlib.suppress(ValueError):  # a body that is not JSON holds no token
                        observe(ended.status, json.loads(ended.body), None, False)
                return
            if page.stream is not None:  # no pagination: the rows are the item's
                async for part in self.parts(page):
                    if observe is not None:  # an incremental cursor reads each part's rows
                        observe(part.status, part.data, part.records, True)
                    yield part
                return
            try:
                step = pager.advance(
                    request, PageView(page.data, page.final_url, page.next_link, page.headers)
                )
            except PaginationError as exc:
                raise FetchError(self.redact(str(exc)), 1) from None
            page.records = step.records
            if step.keep and self.split and step.records is None:
                raise FetchError(
                    self.redact(
                        f"records.split stores each record, but page {page.number} from {page.url} is"
                        f" {describe(page.data)}, not a list: set records.path to where its records are"
                    ),
                    1,
                )
            if observe is not None:
                observe(page.status, page.data, step.records, step.keep)
            if step.keep:
                yield page
            if step.fail is not None:
                raise FetchError(self.redact(step.fail), 1)
            request = step.next
            if request is not None and request.params is None:  # a next URL: same origin, or no credentials
                home, there = _origin(task.url), _origin(request.url)
                if self._has_credentials and there != home:
                    message = (
                        f"the next page is on another origin ({there[1]}); pullctl sends credentials only"
                        f" to {home[1]}"
                    )
                    raise FetchError(self.redact(message), 1)

    async def parts(self, page: Page) -> AsyncIterator[Page]:
        """A streamed page's records as parts of it, read as they are consumed."""
        assert page.stream is not None
        part = 0
        try:
            async for rows in page.stream.rows:
                yield replace(page, data=rows, records=rows, part=part, stream=None)
                part += 1
        finally:
            await page.stream.aclose()

    # -- one page, with retries -----------------------------------------------------------------------

    async def call(self, request: PageRequest, task: FetchTask, call: Call) -> Page:
        """One exchange with the retry policy (a job's create, poll or download); ``FetchError`` when it
        fails."""
        return await self._fetch(request, task, call)

    @property
    def sleep(self) -> Callable[[float], Awaitable[None]]:
        return self._sleep

    async def _fetch(self, request: PageRequest, task: FetchTask, call: Call) -> Page:
        def retried(_attempt: int, _delay: float, _outcome: Outcome) -> None:
            self.counts["retries"] += 1

        try:
            return await call_with_retries(
                lambda: self._attempt(request, task, call),
                self.policy,
                sleep=self._sleep,
                rng=self._rng,
                on_retry=retried,
            )
        except GaveUp as exc:
            raise FetchError(self.redact(exc.reason), exc.attempts, exc.outcome.status) from None

    async def _attempt(self, request: PageRequest, task: FetchTask, call: Call) -> Page:
        await self.limiter.acquire()
        if self.tokens is None or not call.credentials:
            self.counts["requests"] += 1
            return await self._bounded(request, task, call)
        grant = await self.tokens.grant()  # outside the request's timeout: a renewal has its own
        self.counts["requests"] += 1
        try:
            return await self._bounded(request, task, call, grant)
        except _Refused:
            grant = await self.tokens.renew(grant)  # one token request for every worker that met the 401
        await self.limiter.acquire()
        self.counts["requests"] += 1
        try:
            return await self._bounded(request, task, call, grant, last=True)
        except AttemptFailed as failed:
            if failed.outcome.status != 401:
                raise
            raise final(
                f"{failed.outcome.reason} (refused again with a new token from the {self.tokens.flow.what}:"
                " the API does not accept what it hands out; check the scopes or the account's access)"
            ) from None

    async def _bounded(
        self,
        request: PageRequest,
        task: FetchTask,
        call: Call,
        grant: Grant | None = None,
        last: bool = False,
    ) -> Page:
        timeout = call.timeout or self.request.timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                return await self._exchange(request, task, call, grant, last)
        except TRANSPORT_ERRORS as exc:
            failure = transport_failure(exc, host_of(request.url), timeout)
            raise AttemptFailed(Outcome(self.redact(failure.reason), transport=failure.kind)) from None

    async def _exchange(
        self,
        page_request: PageRequest,
        task: FetchTask,
        call: Call,
        grant: Grant | None = None,
        last: bool = False,
    ) -> Page:
        method = call.method or ("POST" if self.request.graphql is not None else self.request.method)
        page_request = page_request.filled()
        body = page_request.body
        params = page_request.params
        all_params = {**params, **self._auth_params} if params is not None else self._auth_params
        headers = self._merge_headers(dict(page_request.headers)) if page_request.headers else self._headers
        if not call.credentials:  # a presigned URL: its query is its credential, and nothing is added
            all_params, headers = {}, httpx.Headers(DEFAULT_HEADERS)
        elif grant is not None:  # the run's token, on the configured origin only (redirects: below)
            headers = httpx.Headers(headers)
            headers.update(grant.headers)
            all_params = {**all_params, **grant.params} if grant.params else all_params
        credentials = self._has_credentials and call.credentials
        target = with_query(page_request.url, all_params)
        if params is not None and self.request.raw_parameters:  # as written; a next URL has its own query
            raw = "&".join(f"{k}={v}" for k, v in self.request.raw_parameters.items())
            target = f"{target}{'&' if '?' in target else '?'}{raw}"
        for _ in range(MAX_REDIRECTS + 1):
            url, resp = await self._send(method, target, headers, body)
            page: Page | None = None
            try:
                if resp.status_code in (301, 302, 303, 307, 308) and "location" in resp.headers:
                    target = str(httpx.URL(url).join(resp.headers["location"]))
                    if resp.status_code == 303:
                        method, body = "GET", None
                    if credentials and _origin(target) != _origin(task.url):
                        raise final(
                            f"redirected to another origin ({_origin(target)[1]}); credentials not sent"
                        )
                    continue
                if grant is not None and not last and resp.status_code == 401:
                    raise _Refused(grant)
                page = await self.reader.page(resp, url, page_request.number, call)
                return page
            finally:
                if page is None or page.stream is None:  # a streamed body stays open for its reader
                    await resp.aclose()
        raise final(f"redirect loop: more than {MAX_REDIRECTS} redirects (last to {self.redact(target)})")

    async def _send(
        self, method: str, target: str, headers: httpx.Headers, body: Any
    ) -> tuple[str, httpx.Response]:
        """One request: the URL as sent (httpx's form of ``target``) and the response, its body unread. A GET
        over the run's pool skips the ``httpx.Request`` (``Pool.get``); anything else goes through it."""
        if method == "GET" and body is None and isinstance(self.transport, Pool):
            url = target if plain_url(target) else str(httpx.URL(target))
            return url, await self.transport.get(url, headers)
        request = httpx.Request(method, target, headers=headers, json=body)
        return str(request.url), await self.transport.handle_async_request(request)

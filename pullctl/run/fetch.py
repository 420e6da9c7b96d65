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
``Call`` that says how it differs from a page of the source's own request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import orjson

from pullctl.config import templates
from pullctl.config.models import PAGE_VARIABLE, ROW_FORMATS, ResponseFormat, SourceConfig
from pullctl.config.paths import describe
from pullctl.errors import FetchError, ItemSkippedError
from pullctl.pipeline.documents import RequestCounts
from pullctl.redact import Redactor
from pullctl.retry import AttemptFailed, GaveUp, Outcome, call_with_retries, retry_after_seconds
from pullctl.run.auth import Grant, TokenManager
from pullctl.run.formats import BodyReader, FormatError
from pullctl.run.pagination import PageRequest, PageView, PaginationError, paginator
from pullctl.run.plan import FetchTask
from pullctl.run.responses import Matched, match
from pullctl.run.transport import TRANSPORT_ERRORS, Pool, plain_url
from pullctl.transport_errors import host_of, transport_failure

logger = logging.getLogger("pullctl")
MAX_REDIRECTS = 5
USER_AGENT = "pullctl/0.1 (+https://github.com/pullctl/pullctl)"
# Configured headers replace these (by name, any case); JSON is preferred, anything is accepted (never a 406).
DEFAULT_HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": "application/json, */*;q=0.5",
    "Accept-Encoding": "gzip, deflate",
}


@dataclass
class Page:
    url: str  # redacted
    status: int
    number: int
    body: bytes
    data: Any
    content_type: str
    next_link: str | None = None  # the Link header's rel="next"
    final_url: str = ""  # the URL that answered (after redirects), not redacted: for relative next links
    records: list[Any] | None = None  # the page's records (records.path), None when it has no list
    headers: Mapping[str, str] = field(default_factory=dict)  # the response's (a cursor may be in one)
    format: str = "json"  # what the body was (response.format), kept as the document's request.format
    part: int = 0  # a streamed body's records come as parts 0, 1, ... of one page
    stream: Streamed | None = None  # rows still to read (records.split, no pagination)


@dataclass
class Streamed:
    """A body whose rows are read as they are consumed; ``aclose`` ends it (and its response) early."""

    response: httpx.Response
    rows: AsyncGenerator[list[Any], None]

    async def aclose(self) -> None:
        await self.rows.aclose()
        await self.response.aclose()


@dataclass(frozen=True)
class Call:
    """How one exchange differs from a plain JSON page (a job's poll is a GET; its download may go without
    credentials, read another format and have its own timeout)."""

    method: str | None = None  # None: the request's
    credentials: bool = True  # False: no auth, no configured headers (presigned URLs)
    response: ResponseFormat | None = None  # None: JSON, as a response with no response block
    stream: bool = False  # rows of a split source with no pagination: read as they are consumed
    timeout: float | None = None  # None: request.timeout_seconds


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


def _seconds_until(value: str, form: str, now: Callable[[], float] = time.time) -> float | None:
    """Seconds until a reset header's moment: epoch seconds, seconds from now, or an HTTP date."""
    text = value.strip()
    if form == "http_date":
        return retry_after_seconds(text) or 0.0 if text else None
    try:
        number = float(text)
    except ValueError:
        return None
    return max(number - now(), 0.0) if form == "epoch_seconds" else max(number, 0.0)


def _page_templated(config: SourceConfig) -> bool:
    """Whether the request names ``{page.number}``, ``{page.offset}`` or ``{page.cursor}`` anywhere."""
    ing = config.ingestion
    if ing.request is None:
        return False
    fields = (fld for _, value in ing.template_places() for fld in templates.template_fields(value))
    return any(fld.root == PAGE_VARIABLE for fld in fields)


def _final(reason: str) -> AttemptFailed:
    return AttemptFailed(Outcome(reason, final=True))


class _Ended(Exception):
    """A ``response_actions`` rule ends the item's pages here: success, the response not stored (its status
    and body still go to an ``observe`` hook: a sync token may be in it)."""

    def __init__(self, status: int = 0, body: bytes = b"") -> None:
        super().__init__(status)
        self.status, self.body = status, body


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
        self.budget = config.ingestion.rate_limit
        self.concurrency = concurrency
        self.request = config.ingestion.request
        self.policy = config.ingestion.retry
        self.pagination = config.ingestion.pagination
        self.actions = config.ingestion.response_actions
        self.page_templated = _page_templated(config)
        self.records_path = config.ingestion.records_path
        records = config.ingestion.records
        self.split = records is not None and records.split
        self.transport = transport
        self.redact = redact
        self.counts = counts
        self.limiter = limiter or RateLimiter(config.ingestion.rate_limit.requests_per_second)
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
            except _Ended as ended:
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
            raise _final(
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
                        raise _final(
                            f"redirected to another origin ({_origin(target)[1]}); credentials not sent"
                        )
                    continue
                if grant is not None and not last and resp.status_code == 401:
                    raise _Refused(grant)
                page = await self._page(resp, url, page_request.number, call)
                return page
            finally:
                if page is None or page.stream is None:  # a streamed body stays open for its reader
                    await resp.aclose()
        raise _final(f"redirect loop: more than {MAX_REDIRECTS} redirects (last to {self.redact(target)})")

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

    async def _page(self, resp: httpx.Response, url: str, number: int, call: Call) -> Page:
        status = resp.status_code
        shown_url = self.redact(url)
        ok = 200 <= status < 300
        reset = self._spend(resp.headers)
        read: bytes | None = None
        if self.actions:  # checked before the retry policy: the body may say what the status does not
            # a report's body is parsed as it arrives: only rules on the status and headers apply to it
            heads = ok and call.response is not None
            read = b"" if heads else await self._read(resp, self.request.max_response_bytes, cap_is_error=ok)
            rules = (
                [r for r in self.actions if not r.model_fields_set & _BODY_TESTS] if heads else self.actions
            )
            matched = match(rules, status, resp.headers, read)
            if matched is not None:
                self._act(matched, resp, shown_url, read, reset)
        if not ok:
            snippet = ""
            if status not in self.policy.retry_on_status:
                head = read[:300] if read is not None else await self._read(resp, 300, cap_is_error=False)
                snippet = head.decode("utf-8", "replace").strip()
            reason = f"HTTP {status} {resp.reason_phrase} from {shown_url}" + (
                f": {snippet[:300]}" if snippet else ""
            )
            # a retried status waits for the later of Retry-After and the rate limit's reset
            raise AttemptFailed(Outcome(self.redact(reason), status=status, headers=resp.headers, wait=reset))
        if call.response is not None:
            return await self._formatted(resp, url, number, call)
        body = read if read is not None else await self._read(resp, self.request.max_response_bytes)
        content_type = resp.headers.get("content-type", "")
        if not body.strip():
            raise _final(f"empty response body from {shown_url}, expected JSON")
        try:
            data = parse_json(body)
        except ValueError as exc:
            start = body[:80].decode("utf-8", "replace")
            raise _final(
                self.redact(
                    f"response from {shown_url} is not JSON ({content_type or 'no content-type'}): {exc};"
                    f" starts {start!r}"
                )
            ) from None
        link = resp.links.get("next", {}).get("url") if self.pagination.type == "link_header" else None
        kind = content_type.split(";")[0].strip() or "application/json"
        return Page(shown_url, status, number, body, data, kind, link, url, headers=resp.headers)

    async def _formatted(self, resp: httpx.Response, url: str, number: int, call: Call) -> Page:
        """A body of ``call.response.format``: parsed into records as it arrives (``formats.py``), stored as
        JSON. Rows of a streamed call are read later, as they are consumed (``Streamed``)."""
        assert call.response is not None
        shown_url = self.redact(url)
        fmt = call.response.format
        cap = self.request.max_response_bytes
        declared = resp.headers.get("content-length", "")
        encoding = resp.headers.get("content-encoding", "")
        if declared.isdigit() and int(declared) > cap and not encoding:
            raise _final(f"response of {int(declared)} bytes is larger than max_response_bytes={cap}")
        link = resp.links.get("next", {}).get("url") if self.pagination.type == "link_header" else None
        try:
            reader = BodyReader(call.response, encoding, cap)
        except FormatError as exc:
            raise _final(self.redact(f"{fmt} body from {shown_url}: {exc}")) from None
        page = Page(
            shown_url,
            resp.status_code,
            number,
            b"",
            None,
            "application/json",
            link,
            url,
            None,
            resp.headers,
            fmt,
        )
        if call.stream and reader.rows:
            timeout = call.timeout or self.request.timeout_seconds
            rows = self._rows(resp, reader, url, asyncio.get_running_loop().time() + timeout, timeout)
            page.stream = Streamed(resp, rows)
            return page
        records: list[Any] = []
        try:
            async for chunk in resp.aiter_raw():
                records.extend(reader.feed(chunk))
            records.extend(reader.close())
        except FormatError as exc:
            raise _final(self.redact(f"{fmt} body from {shown_url}: {exc}")) from None
        page.data = records if reader.rows else records[0]
        page.body = json_bytes(page.data)
        return page

    async def _rows(
        self, resp: httpx.Response, reader: BodyReader, url: str, deadline: float, seconds: float
    ) -> AsyncGenerator[list[Any], None]:
        """The rows of a streamed body, a chunk at a time; the body must be read by ``deadline``. A failure
        here fails the item (records already handed on stay: nothing is retried twice)."""
        shown_url = self.redact(url)
        chunks = resp.aiter_raw()
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        chunk = await anext(chunks, None)
                except TRANSPORT_ERRORS as exc:
                    failure = transport_failure(exc, host_of(url), seconds)
                    raise FetchError(self.redact(f"reading {shown_url}: {failure.reason}"), 1) from None
                rows = reader.feed(chunk) if chunk is not None else reader.close()
                if rows:
                    yield rows
                if chunk is None:
                    return
        except FormatError as exc:
            raise FetchError(self.redact(f"{reader.format} body from {shown_url}: {exc}"), 1) from None

    def _spend(self, headers: Mapping[str, str]) -> float | None:
        """Read the API's budget: seconds to its reset (None: not said). Spent: every worker waits for the
        reset, or, beyond ``max_retry_after_seconds``, the rest of the run's requests are refused."""
        budget = self.budget
        if not budget.reset_header or budget.reset_header.lower() not in headers:
            return None
        reset = _seconds_until(headers[budget.reset_header.lower()], budget.reset_format)
        remaining = headers.get(budget.remaining_header.lower()) if budget.remaining_header else None
        floor = budget.min_remaining if budget.min_remaining is not None else self.concurrency
        if reset is None or remaining is None or not remaining.strip().isdigit() or int(remaining) > floor:
            return reset
        if reset > self.policy.max_retry_after_seconds:
            self.limiter.blocked = (
                f"rate limit spent: {budget.remaining_header} is {remaining} and {budget.reset_header} is"
                f" {reset:.0f} s away (above max_retry_after_seconds={self.policy.max_retry_after_seconds:g})"
            )
        elif self.limiter.pause(reset):
            said = f"{budget.remaining_header} is {remaining}"
            logger.warning(
                f"rate limit: {said}; every worker waits {reset:.1f} s for the reset ({budget.reset_header})",
                extra={"event": "rate_limit_wait"},
            )
        return reset

    def _act(
        self, matched: Matched, resp: httpx.Response, shown_url: str, body: bytes, reset: float | None
    ) -> None:
        """Obey a matched rule: retry (the normal policy), fail, skip or end; no matched page goes through."""
        rule = matched.rule
        said = matched.message or body[:300].decode("utf-8", "replace").strip()
        reason = self.redact(
            f"HTTP {resp.status_code} {resp.reason_phrase} from {shown_url}: {said}"
            f" (response_actions[{matched.index}]: {rule.action})"
        )
        if rule.action == "retry":
            asked = retry_after_seconds(resp.headers.get("retry-after"))
            waits = [w for w in (asked, reset) if w is not None]
            raise AttemptFailed(Outcome(reason, headers=resp.headers, wait=max(waits) if waits else None))
        if rule.action == "fail":
            raise _final(reason)
        if rule.action == "skip":
            raise ItemSkippedError(reason)
        raise _Ended(resp.status_code, body)

    async def _read(self, resp: httpx.Response, cap: int, *, cap_is_error: bool = True) -> bytes:
        declared = resp.headers.get("content-length", "")
        if cap_is_error and declared.isdigit() and int(declared) > cap:
            raise _final(f"response of {int(declared)} bytes is larger than max_response_bytes={cap}")
        chunks: list[bytes] = []
        total = 0
        # without a content-encoding the raw body is the body: no decoder on the way (5 % of a run's CPU)
        plain = "content-encoding" not in resp.headers and not resp.is_stream_consumed
        async for chunk in resp.aiter_raw() if plain else resp.aiter_bytes():
            total += len(chunk)
            if total > cap:
                if not cap_is_error:
                    chunks.append(chunk)
                    break
                raise _final(f"response is larger than max_response_bytes={cap}")
            chunks.append(chunk)
        return b"".join(chunks)[: cap if not cap_is_error else None]


# response_actions conditions that read the body
_BODY_TESTS = frozenset({"body_path", "body_contains"})


def json_bytes(value: Any) -> bytes:
    """A value as the JSON bytes a document stores (compact, UTF-8)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


# a run of 19 digits: maybe an integer beyond 64 bits (below -2**63), which orjson reads as a float
_LONG_NUMBER = re.compile(rb"[0-9]{19}")


def parse_json(body: bytes) -> Any:
    """``json.loads(body)``, through orjson (4 us instead of 18 us for 2 KB) where it gives the same value.

    orjson reads an integer beyond 64 bits as a float: a body with 19 digits in a row is the standard
    library's. What orjson refuses and the standard library reads (NaN, Infinity, 1e400, lone surrogates,
    UTF-16, a BOM) goes to the standard library too, which gives today's value or error.
    ``tests/test_json_parse.py`` compares both over generated bodies."""
    if _LONG_NUMBER.search(body) is None:
        with contextlib.suppress(orjson.JSONDecodeError):
            return orjson.loads(body)
    return json.loads(body)

"""Reading one response into a ``Page``: its status, the ``response_actions`` rules, the API's rate-limit
budget, the body (capped at ``max_response_bytes``) and its JSON, or a ``response.format`` body parsed as it
arrives.

``ResponseReader.page`` is what an attempt does with a response (``fetch.py`` sends it and retries); it raises
``AttemptFailed`` for the retry policy, ``Ended`` when an ``end`` rule matched, ``ItemSkippedError`` for a
``skip`` rule. With ``records.split`` and no pagination the rows stream out later (``Page.stream``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from pullctl.config.models import ResponseFormat, SourceConfig
from pullctl.errors import FetchError, ItemSkippedError
from pullctl.redact import Redactor
from pullctl.retry import AttemptFailed, Outcome, retry_after_seconds
from pullctl.run.formats import BodyReader, FormatError
from pullctl.run.responses import Matched, match
from pullctl.run.transport import TRANSPORT_ERRORS, Body, header
from pullctl.transport_errors import host_of, transport_failure

if TYPE_CHECKING:
    from pullctl.run.fetch import RateLimiter

logger = logging.getLogger("pullctl")


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


def final(reason: str) -> AttemptFailed:
    return AttemptFailed(Outcome(reason, final=True))


class Ended(Exception):
    """A ``response_actions`` rule ends the item's pages here: success, the response not stored (its status
    and body still go to an ``observe`` hook: a sync token may be in it)."""

    def __init__(self, status: int = 0, body: bytes = b"") -> None:
        super().__init__(status)
        self.status, self.body = status, body


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


class ResponseReader:
    """A source's responses read into pages: one per fetcher, sharing the run's limiter (``_spend``)."""

    def __init__(
        self, config: SourceConfig, redact: Redactor, limiter: RateLimiter, concurrency: int = 1
    ) -> None:
        assert config.ingestion.request is not None
        self.request = config.ingestion.request
        self.policy = config.ingestion.retry
        self.pagination = config.ingestion.pagination
        self.actions = config.ingestion.response_actions
        self.budget = config.ingestion.rate_limit
        self.redact = redact
        self.limiter = limiter
        self.concurrency = concurrency

    async def page(self, resp: httpx.Response, url: str, number: int, call: Call) -> Page:
        status = resp.status_code
        shown_url = self.redact(url)
        ok = 200 <= status < 300
        reset = self._spend(resp.headers)
        read: bytes | None = None
        if self.actions:  # checked before the retry policy: the body may say what the status does not
            # a report's body is parsed as it arrives: only rules on the status and headers apply to it
            heads = ok and call.response is not None
            read = b"" if heads else await self.read(resp, self.request.max_response_bytes, cap_is_error=ok)
            rules = (
                [r for r in self.actions if not r.model_fields_set & _BODY_TESTS] if heads else self.actions
            )
            matched = match(rules, status, resp.headers, read)
            if matched is not None:
                self._act(matched, resp, shown_url, read, reset)
        if not ok:
            snippet = ""
            if status not in self.policy.retry_on_status:
                head = read[:300] if read is not None else await self.read(resp, 300, cap_is_error=False)
                snippet = head.decode("utf-8", "replace").strip()
            reason = f"HTTP {status} {resp.reason_phrase} from {shown_url}" + (
                f": {snippet[:300]}" if snippet else ""
            )
            # a retried status waits for the later of Retry-After and the rate limit's reset
            raise AttemptFailed(Outcome(self.redact(reason), status=status, headers=resp.headers, wait=reset))
        if call.response is not None:
            return await self._formatted(resp, url, number, call)
        body = read if read is not None else await self.read(resp, self.request.max_response_bytes)
        content_type = header(resp, "content-type")
        if not body.strip():
            raise final(f"empty response body from {shown_url}, expected JSON")
        try:
            data = parse_json(body)
        except ValueError as exc:
            start = body[:80].decode("utf-8", "replace")
            raise final(
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
            raise final(f"response of {int(declared)} bytes is larger than max_response_bytes={cap}")
        link = resp.links.get("next", {}).get("url") if self.pagination.type == "link_header" else None
        try:
            reader = BodyReader(call.response, encoding, cap)
        except FormatError as exc:
            raise final(self.redact(f"{fmt} body from {shown_url}: {exc}")) from None
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
            raise final(self.redact(f"{fmt} body from {shown_url}: {exc}")) from None
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
            raise final(reason)
        if rule.action == "skip":
            raise ItemSkippedError(reason)
        raise Ended(resp.status_code, body)

    async def read(self, resp: httpx.Response, cap: int, *, cap_is_error: bool = True) -> bytes:
        declared = header(resp, "content-length")
        if cap_is_error and declared.isdigit() and int(declared) > cap:
            raise final(f"response of {int(declared)} bytes is larger than max_response_bytes={cap}")
        # without a content-encoding the raw body is the body: no decoder on the way (5 % of a run's CPU)
        plain = not header(resp, "content-encoding") and not resp.is_stream_consumed
        if plain and isinstance(resp.stream, Body):  # the run's pool: straight from aiohttp, as it comes
            resp.is_stream_consumed = True
            body = await resp.stream.head(cap)
            if cap_is_error and len(body) > cap:
                raise final(f"response is larger than max_response_bytes={cap}")
            return body[:cap]
        chunks: list[bytes] = []
        total = 0
        async for chunk in resp.aiter_raw() if plain else resp.aiter_bytes():
            total += len(chunk)
            if total > cap:
                if not cap_is_error:
                    chunks.append(chunk)
                    break
                raise final(f"response is larger than max_response_bytes={cap}")
            chunks.append(chunk)
        return b"".join(chunks)[: cap if not cap_is_error else None]


# response_actions conditions that read the body
_BODY_TESTS = frozenset({"body_path", "body_contains"})


def json_bytes(value: Any) -> bytes:
    """A value as the JSON bytes a document stores (compact, UTF-8)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


# A run of 19 digits: maybe an integer beyond 64 bits (below -2**63), which orjson reads as a float. Found as
# 19 zeros in the body with every digit made "0" and every other byte " " (2.5 us for 2 KB; the regex
# ``[0-9]{19}`` took 32 us, 8 % of a run's CPU in bench/run_bench.py).
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_LONG_NUMBER = b"0" * 19


def parse_json(body: bytes) -> Any:
    """``json.loads(body)``, through orjson (4 us instead of 18 us for 2 KB) where it gives the same value.

    orjson reads an integer beyond 64 bits as a float: a body with 19 digits in a row is the standard
    library's. What orjson refuses and the standard library reads (NaN, Infinity, 1e400, lone surrogates,
    UTF-16, a BOM) goes to the standard library too, which gives today's value or error.
    ``tests/test_json_parse.py`` compares both over generated bodies."""
    if _LONG_NUMBER not in body.translate(_DIGITS_AS_ZERO):
        with contextlib.suppress(orjson.JSONDecodeError):
            return orjson.loads(body)
    return json.loads(body)

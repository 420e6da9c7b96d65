"""Pagination as strategies: one class per ``pagination.type``, pure (no I/O).

A paginator walks one item's pages: ``first(url, params)`` is page 1's request; after each page,
``advance(request, page)`` says whether the page is kept and what page comes next (``None``: the item
ends). So "what is page 3's request?" is answered by feeding it pages 1 and 2, with nothing sent.
Each class is bound to its row of ``config.models.PAGINATION_RULES`` (which fields it takes and needs).

Where an item ends (SOURCES.md §4), and nothing else ends it:

- an empty page (its records list is empty; the page is not kept);
- no next cursor, URL or ``Link: rel="next"``;
- page_number/offset: a page shorter than the longest page seen so far in the item. A page shorter than
  the *requested* size is not the end by itself: servers cap page sizes (GitHub at 100, PostgREST at
  ``db-max-rows``), so the next request settles it, and ``offset`` advances by the records received.

What fails the item (``PaginationError``), never read as an end:

- a configured records path (``stop_when_empty_path``) missing from a page, or not a list;
- page_number/offset over a page that is an object with no records path to count its records;
- a cursor or next URL seen before in the item, or a page whose records equal the previous page's
  (a server that repeats its last page): ``pagination loop: ...``;
- more pages left at ``max_pages`` (the pages fetched are kept).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urljoin

from pullctl.config.models import PAGINATION_RULES, PaginationRules
from pullctl.config.paths import JsonPath, describe, parse_path

if TYPE_CHECKING:
    from pullctl.config.models import Pagination, PaginationType


class PaginationError(Exception):
    """The item's pages cannot be followed without losing or repeating data; the message says why."""


@dataclass(frozen=True)
class PageRequest:
    """What to send for one page. ``params`` None: the URL is sent as given (a next URL has its own query)."""

    url: str
    params: Mapping[str, str] | None
    number: int = 1


@dataclass(frozen=True)
class PageView:
    """What a paginator reads of a response: the parsed body, the URL that answered, Link's rel="next"."""

    data: Any
    url: str
    next_link: str | None = None


@dataclass(frozen=True)
class Step:
    keep: bool  # store this page (False: an empty page, which ends the item)
    next: PageRequest | None  # None: the item ends here
    fail: str | None = None  # the page is kept, then the item fails with this (pages left at max_pages)
    records: list[Any] | None = None  # the page's records; None when it has no list (an object, no path)


class Paginator:
    """The rules every type shares; a subclass says what the next request is (``_next``)."""

    type: ClassVar[PaginationType] = "none"
    rules: ClassVar[PaginationRules] = PAGINATION_RULES["none"]
    counts_records: ClassVar[bool] = False  # page_number/offset: the end is read from record counts

    def __init__(self, config: Pagination, records_path: str | None = None) -> None:
        self.config = config
        path = records_path or config.stop_when_empty_path
        self.records_path: JsonPath | None = parse_path(path) if path else None
        self._longest = 0
        self._previous: list[Any] | None = None

    def first(self, url: str, params: Mapping[str, str]) -> PageRequest:
        return PageRequest(url, dict(params), 1)

    def advance(self, request: PageRequest, page: PageView) -> Step:
        records = self.records(page.data, request.number)
        if records is not None and not records:
            return Step(False, None, records=records)
        if self.type == "none":
            return Step(True, None, records=records)
        if records is not None and records == self._previous:
            raise PaginationError(
                f"pagination loop: page {request.number} has the same records as page {request.number - 1}"
                " (the server repeats a page; nothing more would be new)"
            )
        if self.counts_records and records is None:
            raise PaginationError(
                f"page {request.number}: {self.type} pagination counts records, but the page is"
                f" {describe(page.data)}; set stop_when_empty_path to where its records are"
            )
        shorter = records is not None and len(records) < self._longest
        nxt = None if (self.counts_records and shorter) else self._next(request, page, records)
        if records is not None:
            self._longest = max(self._longest, len(records))
            self._previous = records
        if nxt is not None and request.number >= self.config.max_pages:
            more = f"stopped at max_pages={self.config.max_pages} with more pages left"
            return Step(True, None, more, records)
        return Step(True, nxt, records=records)

    def records(self, data: Any, number: int) -> list[Any] | None:
        """The page's records: at the records path, else the page itself when it is a list (None: unknown)."""
        if self.records_path is None:
            return data if isinstance(data, list) else None
        found = self.records_path.find(data)
        if found.missing:
            raise PaginationError(
                f"page {number}: records path '{self.records_path}' is not in the page ({describe(data)})"
            )
        if found.value is None:
            return []
        if not isinstance(found.value, list):
            raise PaginationError(
                f"page {number}: records path '{self.records_path}' holds {describe(found.value)}, not a list"
            )
        return found.value

    def _next(self, request: PageRequest, page: PageView, records: list[Any] | None) -> PageRequest | None:
        return None


class PageNumber(Paginator):
    type = "page_number"
    rules = PAGINATION_RULES["page_number"]
    counts_records = True

    def first(self, url: str, params: Mapping[str, str]) -> PageRequest:
        c = self.config
        sent = {**params, c.page_param: str(c.start_page)}
        if c.page_size_param and c.page_size:
            sent[c.page_size_param] = str(c.page_size)
        return PageRequest(url, sent, 1)

    def _next(self, request: PageRequest, page: PageView, records: list[Any] | None) -> PageRequest | None:
        assert request.params is not None
        number = int(request.params[self.config.page_param]) + 1
        return _with(request, {self.config.page_param: str(number)})


class Offset(Paginator):
    type = "offset"
    rules = PAGINATION_RULES["offset"]
    counts_records = True

    def first(self, url: str, params: Mapping[str, str]) -> PageRequest:
        c = self.config
        return PageRequest(url, {**params, c.offset_param: "0", c.limit_param: str(c.limit)}, 1)

    def _next(self, request: PageRequest, page: PageView, records: list[Any] | None) -> PageRequest | None:
        assert request.params is not None and records is not None
        offset = int(request.params[self.config.offset_param]) + len(records)
        return _with(request, {self.config.offset_param: str(offset)})


class Cursor(Paginator):
    type = "cursor"
    rules = PAGINATION_RULES["cursor"]

    def __init__(self, config: Pagination, records_path: str | None = None) -> None:
        super().__init__(config, records_path)
        assert config.cursor_path is not None
        self.cursor_path = parse_path(config.cursor_path)
        self._seen: set[str] = set()

    def _next(self, request: PageRequest, page: PageView, records: list[Any] | None) -> PageRequest | None:
        cursor = self.cursor_path.get(page.data)
        if cursor is None or cursor == "" or cursor is False:
            return None
        if isinstance(cursor, dict | list):
            raise PaginationError(
                f"page {request.number}: cursor_path '{self.cursor_path}' holds {describe(cursor)},"
                " not a cursor"
            )
        text = str(cursor)
        if text in self._seen:
            raise PaginationError(f"pagination loop: cursor '{text}' repeated at page {request.number + 1}")
        self._seen.add(text)
        return _with(request, {self.config.cursor_param: text})


class _Link(Paginator):
    """Next pages by URL (a body field or the Link header): each URL at most once per item."""

    def __init__(self, config: Pagination, records_path: str | None = None) -> None:
        super().__init__(config, records_path)
        self._seen: set[str] = set()

    def first(self, url: str, params: Mapping[str, str]) -> PageRequest:
        return PageRequest(url, dict(params), 1)

    def _link(self, request: PageRequest, page: PageView) -> str | None:
        raise NotImplementedError

    def _next(self, request: PageRequest, page: PageView, records: list[Any] | None) -> PageRequest | None:
        link = self._link(request, page)
        if not link:
            return None
        absolute = urljoin(page.url, link)
        if absolute in self._seen or absolute == page.url:
            raise PaginationError(
                f"pagination loop: next URL '{absolute}' repeated at page {request.number + 1}"
            )
        self._seen.add(absolute)
        return PageRequest(absolute, None, request.number + 1)


class NextUrl(_Link):
    type = "next_url"
    rules = PAGINATION_RULES["next_url"]

    def __init__(self, config: Pagination, records_path: str | None = None) -> None:
        super().__init__(config, records_path)
        assert config.next_url_path is not None
        self.next_url_path = parse_path(config.next_url_path)

    def _link(self, request: PageRequest, page: PageView) -> str | None:
        link = self.next_url_path.get(page.data)
        if link is None or link == "" or link is False:
            return None
        if not isinstance(link, str):
            raise PaginationError(
                f"page {request.number}: next_url_path '{self.next_url_path}' holds {describe(link)},"
                " not a URL"
            )
        return link


class LinkHeader(_Link):
    type = "link_header"
    rules = PAGINATION_RULES["link_header"]

    def _link(self, request: PageRequest, page: PageView) -> str | None:
        return page.next_link


STRATEGIES: Mapping[PaginationType, type[Paginator]] = {
    cls.type: cls for cls in (Paginator, PageNumber, Offset, Cursor, NextUrl, LinkHeader)
}


def paginator(config: Pagination, records_path: str | None = None) -> Paginator:
    """A fresh paginator for one item (it keeps that item's state: pages seen, cursors, the longest page).
    ``records_path``: where a page's records are (``Ingestion.records_path``)."""
    return STRATEGIES[config.type](config, records_path)


def _with(request: PageRequest, changes: Mapping[str, str]) -> PageRequest:
    return replace(request, params={**(request.params or {}), **changes}, number=request.number + 1)

"""Pagination as strategies: one class per ``pagination.type``, pure (no I/O).

A paginator walks one item's pages: ``first(request)`` is page 1's request; after each page,
``advance(request, page)`` says whether the page is kept and what page comes next (``None``: the item
ends). So "what is page 3's request?" is answered by feeding it pages 1 and 2, with nothing sent.
Each class is bound to its row of ``config.models.PAGINATION_RULES`` (which fields it takes and needs).
Page numbers, offsets and cursors go where ``inject`` says: a query parameter, a header, or a place in
the JSON body (``body_path``; a GraphQL ``variables.after``). A null cursor is left out, never sent.

Where an item ends (SOURCES.md §4), and nothing else ends it:

- an empty page (its records list is empty; the page is not kept);
- ``has_more_path`` false, ``done_path`` true, ``total_path`` covered;
- no next cursor, URL or ``Link: rel="next"``;
- page_number/offset: a page shorter than the longest page seen so far in the item. A page shorter than
  the *requested* size is not the end by itself: servers cap page sizes (GitHub at 100, PostgREST at
  ``db-max-rows``), so the next request settles it, and ``offset`` advances by the records received.

What fails the item (``PaginationError``), never read as an end:

- the records path (``records.path``) missing from a page, or not a list; so ``has_more_path``,
  ``done_path`` and ``total_path``;
- page_number/offset over a page that is an object with no records path to count its records;
- ``has_more`` true with no next cursor (the page is kept);
- a cursor or next URL seen before in the item, or a page whose records equal the previous page's
  (a server that repeats its last page): ``pagination loop: ...``;
- more pages left at ``max_pages`` (the pages fetched are kept).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urljoin

from pullctl.config.paths import JsonPath, describe, parse_path
from pullctl.run.pages import PageRequest, PageView, set_at

if TYPE_CHECKING:
    from pullctl.config.models import Pagination, PaginationType


class PaginationError(Exception):
    """The item's pages cannot be followed without losing or repeating data; the message says why."""


@dataclass(frozen=True)
class Step:
    keep: bool  # store this page (False: an empty page, which ends the item)
    next: PageRequest | None  # None: the item ends here
    fail: str | None = None  # the page is kept, then the item fails with this (pages left at max_pages)
    records: list[Any] | None = None  # the page's records; None when it has no list (an object, no path)


class Paginator:
    """The rules every type shares; a subclass says what the next request is (``_next``)."""

    type: ClassVar[PaginationType] = "none"
    counts_records: ClassVar[bool] = False  # page_number/offset: the end is read from record counts

    def __init__(self, config: Pagination, records_path: str | None = None, templated: bool = False) -> None:
        self.config = config
        self.templated = templated  # {page.*} in the request: inject nothing, only advance the values
        path = records_path or config.stop_when_empty_path
        self.records_path: JsonPath | None = parse_path(path) if path else None
        self._flags = [
            (name, parse_path(p)) for name in ("has_more_path", "done_path") if (p := getattr(config, name))
        ]
        self._total = parse_path(config.total_path) if config.total_path else None
        self._longest = 0
        self._received = 0
        self._previous: list[Any] | None = None

    def first(self, request: PageRequest) -> PageRequest:
        return request

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
                f" {describe(page.data)}; set records.path to where its records are"
            )
        said_more = self._said_more(page.data, request.number)
        self._received += len(records or [])
        nxt: PageRequest | None = None
        if said_more is not False and not self._covered(page.data, request.number):
            shorter = records is not None and len(records) < self._longest
            if not (self.counts_records and shorter):
                nxt = self._next(request, page, records)
            if nxt is None and said_more:  # the page is kept; what follows it cannot be reached
                broken = (
                    f"page {request.number} says more pages follow ({self.config.has_more_path} is true),"
                    f" but it has no next {self._what_next()}"
                )
                return Step(True, None, broken, records)
        if records is not None:
            self._longest = max(self._longest, len(records))
            self._previous = records
        if nxt is not None and self.config.first_page_only and nxt.params is not None:
            nxt = replace(
                nxt, params={k: v for k, v in nxt.params.items() if k not in self.config.first_page_only}
            )
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

    def _said_more(self, data: Any, number: int) -> bool | None:
        """``has_more_path`` / ``done_path``: True (more follow), False (the last page), None (not said)."""
        said: bool | None = None
        for name, path in self._flags:
            value = _flag(self._required(path, name, data, number), name, path, number)
            more = value if name == "has_more_path" else not value
            if not more:
                return False
            said = True if name == "has_more_path" else said  # "not done" alone does not promise a cursor
        return said

    def _covered(self, data: Any, number: int) -> bool:
        if self._total is None:
            return False
        total = self._required(self._total, "total_path", data, number)
        if isinstance(total, bool) or not isinstance(total, int | float | str) or not str(total).isdigit():
            raise PaginationError(
                f"page {number}: total_path '{self._total}' holds {describe(total)}, not a count"
            )
        return self._received >= int(total)

    @staticmethod
    def _required(path: JsonPath, name: str, data: Any, number: int) -> Any:
        found = path.find(data)
        if found.missing:
            raise PaginationError(f"page {number}: {name} '{path}' is not in the page ({describe(data)})")
        return found.value

    def _what_next(self) -> str:
        return "cursor"

    def _next(self, request: PageRequest, page: PageView, records: list[Any] | None) -> PageRequest | None:
        return None

    # -- where values go (inject) ---------------------------------------------------------------------

    def _put(self, request: PageRequest, name: str, value: Any, body_path: str | None = None) -> PageRequest:
        """``request`` with ``value`` at ``name`` (query or header) or at ``body_path`` (body); None leaves
        the place out (a null cursor is never sent)."""
        if self.templated:
            return replace(request, page={**request.page, **_page_value(self, name, value)})
        inject = self.config.inject
        if inject == "body":
            assert body_path is not None
            return replace(request, body=set_at(request.body, body_path, value))
        if inject == "header":
            headers = {k: v for k, v in request.headers.items() if k.lower() != name.lower()}
            if value is not None:
                headers[name] = str(value)
            return replace(request, headers=headers)
        params = {k: v for k, v in (request.params or {}).items() if k != name}
        if value is not None:
            params[name] = str(value)
        return replace(request, params=params)


class PageNumber(Paginator):
    type = "page_number"
    counts_records = True

    def first(self, request: PageRequest) -> PageRequest:
        c = self.config
        request = self._put(request, c.page_param, c.start_page, c.body_path)
        if c.page_size_param and c.page_size:
            request = self._put(request, c.page_size_param, c.page_size, c.page_size_body_path)
        return request

    def _next(self, request: PageRequest, page: PageView, records: list[Any] | None) -> PageRequest | None:
        c = self.config
        number = c.start_page + request.number
        return replace(self._put(request, c.page_param, number, c.body_path), number=request.number + 1)


class Offset(Paginator):
    type = "offset"
    counts_records = True

    def __init__(self, config: Pagination, records_path: str | None = None, templated: bool = False) -> None:
        super().__init__(config, records_path, templated)
        self._offset = 0

    def first(self, request: PageRequest) -> PageRequest:
        c = self.config
        request = self._put(request, c.offset_param, 0, c.body_path)
        return self._put(request, c.limit_param, c.limit, c.page_size_body_path)

    def _next(self, request: PageRequest, page: PageView, records: list[Any] | None) -> PageRequest | None:
        assert records is not None
        self._offset += len(records)  # by the records received, not by limit
        nxt = self._put(request, self.config.offset_param, self._offset, self.config.body_path)
        return replace(nxt, number=request.number + 1)


class Cursor(Paginator):
    type = "cursor"

    def __init__(self, config: Pagination, records_path: str | None = None, templated: bool = False) -> None:
        super().__init__(config, records_path, templated)
        self.cursor_path = parse_path(config.cursor_path) if config.cursor_path else None
        self._seen: set[str] = set()

    def first(self, request: PageRequest) -> PageRequest:
        c = self.config
        start = c.initial_cursor
        if start is None and c.inject == "query" and (request.params or {}).get(c.cursor_param):
            # the request's own parameter is the first cursor: a sync token ({incremental.start}) that is
            # also the page cursor (Asana's sync)
            start = (request.params or {})[c.cursor_param]
        if start is not None:
            self._seen.add(start)
        return self._put(request, c.cursor_param, start, c.body_path)

    def _cursor(self, request: PageRequest, page: PageView, records: list[Any] | None) -> Any:
        c = self.config
        if c.cursor_from == "header":
            assert c.cursor_header is not None
            return page.headers.get(c.cursor_header) or page.headers.get(c.cursor_header.lower())
        assert self.cursor_path is not None
        if c.cursor_from == "last_record":
            if records is None:
                raise PaginationError(
                    f"page {request.number}: cursor_from: last_record needs the page's records, but the page"
                    f" is {describe(page.data)}; set records.path"
                )
            return self.cursor_path.get(records[-1]) if records else None
        return self.cursor_path.get(page.data)

    def _next(self, request: PageRequest, page: PageView, records: list[Any] | None) -> PageRequest | None:
        cursor = self._cursor(request, page, records)
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
        value = cursor if self.config.inject == "body" else text  # a JSON body keeps the cursor's type
        nxt = self._put(request, self.config.cursor_param, value, self.config.body_path)
        return replace(nxt, number=request.number + 1)


class _Link(Paginator):
    """Next pages by URL (a body field or the Link header): each URL at most once per item."""

    def __init__(self, config: Pagination, records_path: str | None = None, templated: bool = False) -> None:
        super().__init__(config, records_path, templated)
        self._seen: set[str] = set()

    def _what_next(self) -> str:
        return "URL"

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
        return replace(request, url=absolute, params=None, number=request.number + 1)


class NextUrl(_Link):
    type = "next_url"

    def __init__(self, config: Pagination, records_path: str | None = None, templated: bool = False) -> None:
        super().__init__(config, records_path, templated)
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

    def _link(self, request: PageRequest, page: PageView) -> str | None:
        return page.next_link


STRATEGIES: Mapping[PaginationType, type[Paginator]] = {
    cls.type: cls for cls in (Paginator, PageNumber, Offset, Cursor, NextUrl, LinkHeader)
}


def paginator(config: Pagination, records_path: str | None = None, templated: bool = False) -> Paginator:
    """A fresh paginator for one item (it keeps that item's state: pages seen, cursors, the longest page).
    ``records_path``: where a page's records are (``Ingestion.records_path``); ``templated``: the request
    holds ``{page.*}`` templates, so the paginator injects nothing and only advances their values."""
    return STRATEGIES[config.type](config, records_path, templated)


def _page_value(pager: Paginator, name: str, value: Any) -> dict[str, Any]:
    """Which ``{page.*}`` value an injection of ``name`` stands for (the page size is no page value)."""
    c = pager.config
    for field_name, key in (("page_param", "number"), ("offset_param", "offset"), ("cursor_param", "cursor")):
        if name == getattr(c, field_name):
            return {key: value}
    return {}


def _flag(value: Any, name: str, path: JsonPath, number: int) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise PaginationError(f"page {number}: {name} '{path}' holds {describe(value)}, not true or false")

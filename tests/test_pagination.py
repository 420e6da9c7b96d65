"""The pagination strategies, pure: "what is page 3's request?" is answered by feeding pages 1 and 2.

End to end against servers that would fool them: tests/test_pagination_ends.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, get_args

import pytest

from pullctl.config.models import PAGINATION_RULES, Pagination, PaginationType
from pullctl.run.pages import PageRequest, PageView
from pullctl.run.pagination import STRATEGIES, PaginationError, Step, paginator

URL = "https://api.example.com/v1/items"


def walk(config: dict[str, Any], pages: list[Any], links: list[str | None] | None = None) -> list[Step]:
    """Feed ``pages`` (parsed bodies) to a fresh paginator; the steps it took, until it stopped."""
    pager = paginator(Pagination(**config))
    request: PageRequest | None = pager.first(PageRequest(URL, {"q": "x"}))
    steps: list[Step] = []
    for n, data in enumerate(pages):
        assert request is not None, f"stopped before page {n + 1}"
        url = request.url if request.params is None else URL
        step = pager.advance(request, PageView(data, url, (links or [None] * len(pages))[n]))
        steps.append(replace(step, records=None))  # the records are checked on their own below
        request = step.next
    return steps


def params(step: Step) -> dict[str, str] | None:
    assert step.next is not None
    return dict(step.next.params) if step.next.params is not None else None


def records(*ids: int) -> dict[str, Any]:
    return {"data": [{"id": i} for i in ids]}


def test_every_type_has_a_strategy_and_a_rules_row() -> None:
    assert set(STRATEGIES) == set(PAGINATION_RULES) == set(get_args(PaginationType))


def test_page_number_requests() -> None:
    config = {
        "type": "page_number",
        "page_size_param": "per_page",
        "page_size": 2,
        "stop_when_empty_path": "data",
    }
    pager = paginator(Pagination(**config))
    assert pager.first(PageRequest(URL, {"q": "x"})) == PageRequest(
        URL, {"q": "x", "page": "1", "per_page": "2"}, 1
    )
    steps = walk(config, [records(1, 2), records(3, 4), records(5)])
    assert [params(s) for s in steps[:2]] == [
        {"q": "x", "page": "2", "per_page": "2"},
        {"q": "x", "page": "3", "per_page": "2"},
    ]
    assert steps[2] == Step(True, None)  # shorter than the longest page so far: the end


def test_a_page_shorter_than_requested_is_not_the_end_by_itself() -> None:
    # the server caps at 20 while 100 were asked: page 2 settles it
    config = {"type": "offset", "limit": 100, "stop_when_empty_path": "data"}
    steps = walk(config, [records(*range(1, 21)), records(*range(21, 41)), records(41, 42)])
    assert [params(s) for s in steps[:2]] == [
        {"q": "x", "offset": "20", "limit": "100"},  # by the records received, not by limit
        {"q": "x", "offset": "40", "limit": "100"},
    ]
    assert steps[2].next is None and steps[2].keep


def test_an_empty_page_ends_and_is_not_kept() -> None:
    steps = walk({"type": "page_number", "stop_when_empty_path": "data"}, [records(1), {"data": []}])
    assert steps[1] == Step(False, None)
    steps = walk({"type": "page_number", "stop_when_empty_path": "data"}, [records(1), {"data": None}])
    assert steps[1] == Step(False, None)  # a null list is an empty one
    assert walk({"type": "link_header"}, [[]])[0] == Step(False, None)  # a bare empty list


def test_cursor_requests_and_end() -> None:
    config = {
        "type": "cursor",
        "cursor_path": "meta.next",
        "cursor_param": "after",
        "stop_when_empty_path": "data",
    }
    steps = walk(
        config, [{**records(1), "meta": {"next": "c2"}}, {**records(2), "meta": {"next": 17}}, records(3)]
    )
    assert [params(s) for s in steps[:2]] == [{"q": "x", "after": "c2"}, {"q": "x", "after": "17"}]
    assert steps[2].next is None  # no cursor: the end


def test_cursor_from_the_last_record() -> None:
    config = {"type": "cursor", "cursor_path": "data.-1.id", "cursor_param": "starting_after"}
    steps = walk(config, [records(1, 2), records(3)])
    assert [params(s) for s in steps] == [
        {"q": "x", "starting_after": "2"},
        {"q": "x", "starting_after": "3"},
    ]


def test_next_url_by_json_pointer_and_relative_links() -> None:
    config = {"type": "next_url", "next_url_path": "/@odata.nextLink", "stop_when_empty_path": "value"}
    steps = walk(config, [{"value": [1], "@odata.nextLink": "/v1/items?$skiptoken=2"}, {"value": [2]}])
    assert steps[0].next == PageRequest("https://api.example.com/v1/items?$skiptoken=2", None, 2)
    assert steps[1] == Step(True, None)


def test_link_header() -> None:
    steps = walk({"type": "link_header"}, [[1], [2]], links=["?page=2", None])
    assert steps[0].next == PageRequest(URL + "?page=2", None, 2) and steps[1].next is None


@pytest.mark.parametrize(
    ("config", "pages", "links", "message"),
    [
        (
            {"type": "cursor", "cursor_path": "next", "stop_when_empty_path": "data"},
            [{**records(1), "next": "abc"}, {**records(2), "next": "abc"}],
            None,
            "pagination loop: cursor 'abc' repeated at page 3",
        ),
        (
            {"type": "page_number", "stop_when_empty_path": "data"},
            [records(1, 2), records(1, 2)],
            None,
            "pagination loop: page 2 has the same records as page 1 (the server repeats a page; nothing more"
            " would be new)",
        ),
        (
            {"type": "link_header"},
            [[1], [2]],
            ["?page=2", "?page=2"],
            f"pagination loop: next URL '{URL}?page=2' repeated at page 3",
        ),
        (
            {"type": "offset", "stop_when_empty_path": "data"},
            [[{"id": 1}]],
            None,
            "page 1: records path 'data' is not in the page (a list of 1 item)",
        ),
        (
            {"type": "offset", "stop_when_empty_path": "data"},
            [{"data": {"id": 1}}],
            None,
            "page 1: records path 'data' holds an object with keys id, not a list",
        ),
        (
            {"type": "offset"},
            [{"results": [1], "count": 1}],
            None,
            "page 1: offset pagination counts records, but the page is an object with keys results, count; set"
            " records.path to where its records are",
        ),
        (
            {"type": "next_url", "next_url_path": "next"},
            [{"next": {"href": "/x"}}],
            None,
            "page 1: next_url_path 'next' holds an object with keys href, not a URL",
        ),
        (
            {
                "type": "cursor",
                "cursor_path": "next",
                "has_more_path": "has_more",
                "stop_when_empty_path": "data",
            },
            [{"data": [1], "next": "c"}],
            None,
            "page 1: has_more_path 'has_more' is not in the page (an object with keys data, next)",
        ),
        (
            {"type": "cursor", "cursor_path": "next", "has_more_path": "more"},
            [{"more": "yes", "next": "c"}],
            None,
            "page 1: has_more_path 'more' holds \"yes\", not true or false",
        ),
        (
            {"type": "page_number", "total_path": "total", "stop_when_empty_path": "data"},
            [{"data": [1], "total": "many"}],
            None,
            "page 1: total_path 'total' holds \"many\", not a count",
        ),
        (
            {"type": "cursor", "cursor_from": "last_record", "cursor_path": "id"},
            [{"x": 1}],
            None,
            "page 1: cursor_from: last_record needs the page's records, but the page is an object with keys x;"
            " set records.path",
        ),
    ],
)
def test_what_fails_the_item(
    config: dict[str, Any], pages: list[Any], links: list[str | None] | None, message: str
) -> None:
    with pytest.raises(PaginationError) as exc:
        walk(config, pages, links)
    assert str(exc.value) == message


def test_max_pages_keeps_the_last_page_and_fails() -> None:
    steps = walk({"type": "page_number", "max_pages": 2}, [[1], [2]])
    assert steps[1] == Step(True, None, "stopped at max_pages=2 with more pages left")


def test_without_pagination_a_page_is_kept_and_ends_the_item() -> None:
    assert walk({}, [{"any": "thing"}]) == [Step(True, None)]
    with pytest.raises(PaginationError, match="records path 'items' is not in the page"):
        walk({"stop_when_empty_path": "items"}, [{"other": []}])


def test_a_step_carries_the_page_records() -> None:
    pager = paginator(Pagination(type="page_number"), "data.items")
    step = pager.advance(pager.first(PageRequest(URL, {})), PageView({"data": {"items": [{"id": 1}]}}, URL))
    assert step.records == [{"id": 1}] and step.next is not None
    bare = paginator(Pagination()).advance(PageRequest(URL, {}), PageView({"an": "object"}, URL))
    assert bare.records is None and bare.keep

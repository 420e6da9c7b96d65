"""``ingestion.pagination`` and the one table of per-type rules, ``PAGINATION_RULES``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from pullctl.config.models.base import PATH_HELP, FieldProblem, Strict, check_path

PaginationType = Literal["none", "page_number", "offset", "cursor", "next_url", "link_header"]


@dataclass(frozen=True)
class PaginationRules:
    """What one pagination type takes: its own fields, and those it needs (with the reason shown)."""

    fields: frozenset[str] = frozenset()
    required: Mapping[str, str] = field(default_factory=dict)


# The one table of per-type rules: the model below validates with it, and each strategy in
# ``run/pagination.py`` is bound to its entry (a new type: a row here, a class there).
_INJECTED = ("inject", "body_path", "page_size_body_path")
# {page.number}, {page.offset}, {page.cursor}: the paginator's values inside a parameter, header or body value
PAGE_VARIABLE, PAGE_FIELDS = "page", ("number", "offset", "cursor")
# {job.id}: the created job's id, in job.poll.url
JOB_VARIABLE, JOB_FIELDS = "job", ("id",)
PAGE_TEMPLATED = ("page_number", "offset", "cursor")  # where page numbers, offsets and cursors go
PAGINATION_COMMON = frozenset(
    {"type", "stop_when_empty_path", "max_pages", "has_more_path", "done_path", "first_page_only"}
)
PAGINATION_RULES: Mapping[PaginationType, PaginationRules] = MappingProxyType(
    {
        "none": PaginationRules(),
        "page_number": PaginationRules(
            frozenset({"page_param", "start_page", "page_size_param", "page_size", *_INJECTED, "total_path"})
        ),
        "offset": PaginationRules(
            frozenset({"offset_param", "limit_param", "limit", *_INJECTED, "total_path"})
        ),
        "cursor": PaginationRules(
            frozenset(
                {"cursor_param", "cursor_path", "cursor_from", "cursor_header", "initial_cursor", *_INJECTED}
            )
        ),
        "next_url": PaginationRules(
            frozenset({"next_url_path"}),
            {"next_url_path": "required for next_url pagination: where the next URL is in the response"},
        ),
        "link_header": PaginationRules(),
    }
)
PATH_FIELDS = (
    "cursor_path",
    "next_url_path",
    "stop_when_empty_path",
    "body_path",
    "page_size_body_path",
    "has_more_path",
    "done_path",
    "total_path",
)


class Pagination(Strict):
    type: PaginationType = "none"
    page_param: str = "page"
    start_page: Annotated[int, Field(ge=0)] = 1
    page_size_param: str | None = None
    page_size: Annotated[int, Field(ge=1)] | None = None
    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: Annotated[int, Field(ge=1)] = 100
    cursor_param: str = Field("cursor", description="the query parameter or header the cursor goes in")
    cursor_from: Literal["body", "header", "last_record"] = Field(
        "body", description="where the next cursor is: the body (cursor_path), a header, or the last record"
    )
    cursor_path: str | None = Field(
        None, description=f"where the next cursor is (in the body, or in the last record): {PATH_HELP}"
    )
    cursor_header: str | None = Field(
        None, description="cursor_from header: the response header that holds it"
    )
    initial_cursor: str | None = Field(None, description="sent on the first request (APIs that need one)")
    inject: Literal["query", "body", "header"] = Field(
        "query", description="where the page number, offset or cursor goes in the request"
    )
    body_path: str | None = Field(
        None, description="inject body: where in the JSON body (created when missing)"
    )
    page_size_body_path: str | None = Field(None, description="inject body: where the page size goes")
    has_more_path: str | None = Field(None, description="the page says whether more follow: stop when false")
    done_path: str | None = Field(None, description="the page says it is the last: stop when true")
    total_path: str | None = Field(None, description="the total record count: stop when covered")
    first_page_only: list[str] = Field(
        default_factory=list, description="query parameters sent only on the first request"
    )
    next_url_path: str | None = Field(None, description=f"where the next page's URL is: {PATH_HELP}")
    stop_when_empty_path: str | None = Field(
        None, description=f"where the page's records list is (an empty one ends the item): {PATH_HELP}"
    )
    max_pages: Annotated[int, Field(ge=1, le=100_000)] = 100

    @field_validator(*PATH_FIELDS)
    @classmethod
    def _paths(cls, v: str | None) -> str | None:
        return check_path(v)

    @model_validator(mode="after")
    def _fields_fit_type(self) -> Pagination:
        rules = PAGINATION_RULES[self.type]
        for name in sorted(self.model_fields_set - PAGINATION_COMMON - rules.fields):
            owners = [t for t, r in PAGINATION_RULES.items() if name in r.fields]
            noun = "type" if len(owners) == 1 else "types"
            raise FieldProblem(name, f"applies to pagination {noun} {' or '.join(owners)}, not {self.type}")
        for name, why in rules.required.items():
            if not getattr(self, name):
                raise FieldProblem(name, why)
        if self.type == "page_number" and self.page_size_param and not self.page_size:
            raise FieldProblem("page_size", "required with page_size_param")
        if self.type == "cursor":
            if self.cursor_from == "header" and not self.cursor_header:
                raise FieldProblem(
                    "cursor_header", "required with cursor_from: header: the header that holds it"
                )
            if self.cursor_from != "header" and not self.cursor_path:
                where = "in each record" if self.cursor_from == "last_record" else "in the response"
                raise FieldProblem(
                    "cursor_path", f"required for cursor pagination: where the next cursor is {where}"
                )
        if self.inject == "body" and not self.body_path:
            raise FieldProblem(
                "body_path", "required with inject: body: where in the JSON body the value goes"
            )
        if self.page_size_body_path and self.inject != "body":
            raise FieldProblem("page_size_body_path", "applies with inject: body")
        return self

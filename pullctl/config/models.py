"""The source config schema (DESIGN §2): pydantic v2 models, strict inside ``ingestion``, frozen.

Loading YAML and locating errors is ``loader.py``'s job; these models only say what is valid.
Cross-field rules raise ``FieldProblem`` so the error lands on the field at fault, not on its parent.
Validation context: ``{"target": "k8s" | "dapr"}`` selects the schedule dialect.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pullctl.canonical import canonical_hash
from pullctl.config import templates
from pullctl.config.paths import PathError, parse_path
from pullctl.config.schedule import ScheduleError, parse_schedule, parse_span, parse_timezone

SOURCE_ID_RE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
IDENT_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"
DEFAULT_RETRY_STATUS = [408, 425, 429, 500, 502, 503, 504]
MAX_HELD_BYTES = 1024**3  # a body held in memory (JSON, XML, a page of rows kept whole)
MAX_STREAMED_BYTES = 1024**4  # rows streamed into split records
PATH_HELP = "a dotted path (data.items, items.-1.id) or a JSON Pointer (/@odata.nextLink)"


def check_path(value: str | None) -> str | None:
    """A ``*_path`` field's validator (SOURCES.md §0): malformed syntax is an error, never a silent miss."""
    if value is not None:
        try:
            parse_path(value)
        except PathError as exc:
            raise ValueError(str(exc)) from None
    return value


def check_url(value: str) -> str:
    """An absolute http(s) URL whose host is literal (templates may follow it, never form it)."""
    head = value.split("{", 1)[0]
    if not re.match(r"^https?://[^/{}]+", value) or ("{" in head.split("://", 1)[-1].split("/", 1)[0]):
        raise ValueError(
            f"must be an absolute http(s) URL with a literal host, e.g. https://api.example.com/v1"
            f" (got {value!r})"
        )
    return value


class FieldProblem(ValueError):
    """A rule broken by ``field`` of the model being validated: the loader points at that field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"@{field}@{message}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GraphQL(_Strict):
    query: Annotated[str, Field(min_length=1, description="sent as written: its braces are GraphQL's")]
    variables: dict[str, Any] = Field(default_factory=dict, description="string values are templates")


def _literal_url(v: str) -> str:
    """A URL written out in full: http(s), a host, no templates (credentials go there and nowhere else)."""
    if not re.match(r"^https?://[^/{}?#]+", v) or "{" in v or "}" in v:
        raise ValueError(f"must be a literal absolute http(s) URL, no templates (got {v!r})")
    return v


class Jwt(_Strict):
    """A signed JWT assertion (RFC 7523), e.g. a Google service account's."""

    private_key: str = Field(description="the PEM private key: {secret.NAME}")
    algorithm: Literal["RS256", "ES256"] = "RS256"
    claims: dict[str, Any] = Field(
        default_factory=dict, description="iss, sub, aud, scope...; iat and exp are added; {secret.NAME}"
    )
    key_id: str | None = Field(None, description="the kid header, when the provider wants one")
    lifetime_seconds: Annotated[int, Field(ge=60, le=86400)] = Field(3600, description="exp - iat")


class OAuth2(_Strict):
    """``auth_type: oauth2``: a token from ``token_url``, sent as ``Authorization: Bearer`` (SOURCES §6)."""

    grant: Literal["client_credentials", "refresh_token", "jwt_bearer"]
    token_url: str = Field(description="the token endpoint: a literal URL, the only place credentials go")
    client_id: str | None = Field(None, description="{secret.NAME} or a literal")
    client_secret: str | None = Field(None, description="{secret.NAME}")
    refresh_token: str | None = Field(None, description="refresh_token grant: {secret.NAME}")
    scopes: list[str] = Field(default_factory=list, description="sent space-separated as scope")
    extra_params: dict[str, str] = Field(default_factory=dict, description="more token request fields")
    client_auth: Literal["body", "basic"] = Field(
        "body", description="client_id/client_secret in the form body, or as HTTP Basic"
    )
    token_path: str = Field("access_token", description=f"the token in the answer: {PATH_HELP}")
    expires_in_path: str | None = Field(
        "expires_in", description="its lifetime in seconds (absent: refreshed on a 401 only)"
    )
    rotation: bool = Field(
        True,
        description="refresh_token grant: the provider may hand out a new refresh token (kept encrypted"
        " in the store; needs PULLCTL_STATE_KEY); false: it never does",
    )
    jwt: Jwt | None = Field(None, description="jwt_bearer: the assertion")

    @field_validator("token_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _literal_url(v)

    @field_validator("token_path", "expires_in_path")
    @classmethod
    def _paths(cls, v: str | None) -> str | None:
        return check_path(v)

    @model_validator(mode="after")
    def _grant_needs(self) -> OAuth2:
        given = self.model_fields_set
        needs = {
            "client_credentials": ("client_id", "client_secret"),
            "refresh_token": ("refresh_token",),
            "jwt_bearer": ("jwt",),
        }[self.grant]
        for name in needs:
            if getattr(self, name) is None:
                raise FieldProblem(name, f"required for grant {self.grant}")
        owned = {"refresh_token": "refresh_token", "rotation": "refresh_token", "jwt": "jwt_bearer"}
        for name, grant in owned.items():
            if name in given and grant != self.grant:
                raise FieldProblem(name, f"applies to grant {grant}, not {self.grant}")
        if self.client_auth == "basic" and (self.client_id is None or self.client_secret is None):
            missing = "client_id" if self.client_id is None else "client_secret"
            raise FieldProblem(missing, "required with client_auth: basic")
        for name in ("client_id", "client_secret", "refresh_token"):
            if name in self.extra_params:
                raise FieldProblem("extra_params", f"{name} has its own field: set oauth2.{name}")
        for name in ("grant_type", "scope", "assertion"):
            if name in self.extra_params:
                raise FieldProblem("extra_params", f"{name} is set by pullctl from grant/scopes/jwt")
        return self


class SessionLogin(_Strict):
    url: str = Field(description="the login endpoint: a literal URL, the only place the login goes")
    method: Literal["GET", "POST"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict, description="{secret.NAME} allowed")
    body: Any = Field(None, description="a JSON body; {secret.NAME} inside string values")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _literal_url(v)

    @model_validator(mode="after")
    def _body(self) -> SessionLogin:
        if self.method == "GET" and self.body is not None:
            raise FieldProblem("body", "a body needs method: POST")
        return self


class Session(_Strict):
    """``auth_type: session``: log in, then send the session token in a header or a query parameter."""

    login: SessionLogin
    token_path: str = Field(description=f"the token in the login answer: {PATH_HELP}")
    header: str | None = Field(None, description="send the token in this header (X-Session-Token)")
    param: str | None = Field(None, description="or in this query parameter")
    prefix: str = Field("", description='written before the token, e.g. "Bearer "')
    ttl_seconds: Annotated[int, Field(ge=1, le=30 * 86400)] | None = Field(
        None, description="how long a session lasts (absent: logged in again on a 401 only)"
    )

    @field_validator("token_path")
    @classmethod
    def _path(cls, v: str) -> str:
        check_path(v)
        return v

    @model_validator(mode="after")
    def _where(self) -> Session:
        if self.header is not None and self.param is not None:
            raise FieldProblem("param", "set header or param, not both: the token goes in one place")
        if self.header is None and self.param is None:
            raise FieldProblem("header", "set header (e.g. X-Session-Token) or param: where the token goes")
        return self


STATIC_AUTH = ("api_key", "bearer", "basic")  # a secret_store/secret_key secret, sent as it is
TOKEN_AUTH = ("oauth2", "session")  # a token pullctl obtains per run (run/auth.py)


class Request(_Strict):
    base_url: Annotated[str, Field(min_length=1, description="URL to fetch; templates allowed")]
    method: Literal["GET", "POST"] = "GET"
    auth_type: Literal["none", "api_key", "bearer", "basic", "oauth2", "session"] = "none"
    oauth2: OAuth2 | None = Field(None, description="auth_type oauth2: how to get the token")
    session: Session | None = Field(None, description="auth_type session: how to log in")
    auth_header: str = Field("X-API-Key", description="api_key: the header to set")
    auth_query_param: str | None = Field(None, description="api_key: send as this query parameter instead")
    secret_store: str | None = Field(None, description='DAPR secret store name, or "kubernetes"')
    secret_key: str | None = Field(None, description="the secret's name in that store")
    parameters: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="query; templates"
    )
    headers: dict[str, str] = Field(default_factory=dict, description="templates")
    body: Any = Field(None, description="POST JSON body; templates inside string values")
    graphql: GraphQL | None = Field(None, description='a POST of {"query", "variables"}; no body')
    raw_parameters: dict[str, str] = Field(
        default_factory=dict, description="query parameters appended as written, not percent-encoded; static"
    )
    timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0
    max_response_bytes: Annotated[int, Field(ge=1024, le=MAX_STREAMED_BYTES)] = Field(
        10 * 1024 * 1024,
        description="the most a body may hold, counted decompressed; above 1 GiB only for streamed rows"
        " (response.format jsonl, csv or tsv with records.split)",
    )

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v)

    @property
    def rotates_refresh_token(self) -> bool:
        """A refresh-token grant whose provider may rotate the token: it needs ``PULLCTL_STATE_KEY``."""
        oauth2 = self.oauth2
        return (
            self.auth_type == "oauth2"
            and oauth2 is not None
            and oauth2.grant == "refresh_token"
            and oauth2.rotation
        )

    @model_validator(mode="after")
    def _auth(self) -> Request:
        if self.auth_type in STATIC_AUTH:
            for name in ("secret_store", "secret_key"):
                if not getattr(self, name):
                    raise FieldProblem(name, f"required when auth_type is {self.auth_type}")
        for block in TOKEN_AUTH:
            if block == self.auth_type and getattr(self, block) is None:
                raise FieldProblem(block, f"required when auth_type is {block}")
            if block != self.auth_type and getattr(self, block) is not None:
                raise FieldProblem(block, f"applies with auth_type: {block}, not {self.auth_type}")
        if self.auth_type in TOKEN_AUTH:
            for name in ("secret_store", "secret_key"):
                if getattr(self, name):
                    raise FieldProblem(
                        name,
                        f"auth_type {self.auth_type} takes its credentials from {{secret.NAME}} in"
                        f" request.{self.auth_type} (declared in ingestion.secrets), not {name}",
                    )
        if self.method == "GET" and self.body is not None:
            raise FieldProblem("body", "a body needs method: POST")
        if self.graphql is not None and self.body is not None:
            raise FieldProblem("body", "graphql is the body (a POST of its query and variables): set one")
        for name, value in self.raw_parameters.items():
            if any(c in name + value for c in "&#\r\n ") or "=" in name:
                raise FieldProblem(
                    "raw_parameters",
                    f"{name}={value!r} holds a character that would break the query (& # = space)",
                )
        for name, value in self.headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise FieldProblem("headers", f"header {name!r} contains a line break")
        return self


class Batch(_Strict):
    size: Annotated[int, Field(ge=2, le=1000, description="items per fetch")]
    join: str = Field(",", description="what joins the items' values in a template, e.g. {team.id}")


class Records(_Strict):
    path: str | None = Field(
        None,
        description=f"where a page's list of records is (absent: the page, if it is a list): {PATH_HELP}",
    )
    split: bool = Field(False, description="store one document per record (its own hash, dedup and event)")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        return check_path(v)


class NamedSecret(_Strict):
    """Where a named secret comes from (DESIGN §4): ``PULLCTL_SECRET_<STORE>_<KEY>``, else the DAPR store."""

    secret_store: Annotated[str, Field(min_length=1, description='DAPR secret store name, or "kubernetes"')]
    secret_key: Annotated[str, Field(min_length=1, description="the secret's name in that store")]


SecretName = Annotated[str, Field(pattern=IDENT_RE)]


class Iteration(_Strict):
    foreach: Annotated[str, Field(pattern=IDENT_RE, description="template variable name for the item")]
    source_mcp: str | None = Field(None, description="MCP server: DAPR app-id")
    source_tool: str | None = Field(None, description="MCP tool that returns the items")
    tool_arguments: dict[str, Any] = Field(default_factory=dict)
    mcp_url: str | None = Field(None, description="direct streamable-HTTP URL instead of DAPR invocation")
    mcp_path: str = Field("/mcp", pattern=r"^/", description="the MCP endpoint's path, for DAPR invocation")
    items: list[dict[str, Any]] | None = Field(None, description="static list instead of an MCP tool")
    from_source: Annotated[str, Field(pattern=SOURCE_ID_RE)] | None = Field(
        None, description="the items are the records of this source's pages, fetched now (a parent)"
    )
    items_path: str | None = Field(None, description=f"where the list is inside the tool result: {PATH_HELP}")
    key: str | None = Field(None, description="item field naming the item; default: first scalar field")
    linkage: dict[str, str] | None = Field(None, description="{name: template}; default: every scalar field")
    concurrency: Annotated[int, Field(ge=1, le=256)] = 5
    shards: Annotated[int, Field(ge=1, le=100)] = 1
    batch: Batch | None = Field(None, description="one fetch per up to `size` items, their values joined")

    @field_validator("items_path")
    @classmethod
    def _items_path(cls, v: str | None) -> str | None:
        return check_path(v)

    @field_validator("foreach")
    @classmethod
    def _not_builtin(cls, v: str) -> str:
        if v == templates.INCREMENTAL_VARIABLE:
            raise ValueError(f"'{v}' is the incremental state's variable ({{{v}.start}}); pick another name")
        if v in templates.BUILTIN_VARIABLES:
            raise ValueError(
                f"'{v}' is a built-in variable ({', '.join(templates.BUILTIN_VARIABLES)}); pick another name"
            )
        return v

    @model_validator(mode="after")
    def _one_source(self) -> Iteration:
        mcp = self.source_mcp is not None or self.mcp_url is not None
        given = [
            name
            for name, on in (
                ("source_mcp", mcp),
                ("items", self.items is not None),
                ("from_source", self.from_source is not None),
            )
            if on
        ]
        if len(given) > 1:
            raise FieldProblem(
                given[1],
                "set one of source_mcp/source_tool (an MCP tool), items (a static list) or from_source"
                f" (another source's records), not {' and '.join(given)}",
            )
        if not given:
            raise FieldProblem(
                "source_mcp",
                "set source_mcp and source_tool (an MCP tool), items (a static list), or from_source"
                " (another source's records)",
            )
        if mcp and not self.source_tool:
            raise FieldProblem(
                "source_tool", "required with source_mcp/mcp_url: the MCP tool that lists the items"
            )
        if self.items is not None and not self.items:
            raise FieldProblem("items", "the static list is empty")
        return self


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


class Pagination(_Strict):
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


class ResponseAction(_Strict):
    """One rule of ``response_actions``: when a response matches, what it means. First match wins."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    status: int | list[int] | None = Field(None, description="the status (or statuses) it applies to")
    body_path: str | None = Field(None, description=f"a value in the JSON body: {PATH_HELP}")
    equals: Any = Field(None, description="body_path/header: equals this (JSON values compare as JSON)")
    in_: list[Any] | None = Field(None, alias="in", description="body_path/header: is one of these")
    not_in: list[Any] | None = Field(None, description="body_path: is none of these")
    exists: bool | None = Field(None, description="body_path: is there (true) or not (false)")
    body_contains: str | None = Field(None, description="the body's text contains this")
    header: str | None = Field(None, description="a response header, with equals or in")
    action: Literal["retry", "fail", "skip", "end"] = Field(
        description="retry (the normal policy), fail the item, skip it (not a failure), end its pages"
    )
    message_path: str | None = Field(None, description="where the API's own message is, for the item's error")

    @field_validator("body_path", "message_path")
    @classmethod
    def _paths(cls, v: str | None) -> str | None:
        return check_path(v)

    @model_validator(mode="after")
    def _one_condition(self) -> ResponseAction:
        given = self.model_fields_set
        tests = [n for n in ("equals", "in_", "not_in", "exists") if n in given]
        shown = [("in" if n == "in_" else n) for n in tests]
        kinds = [k for k in ("body_path", "body_contains", "header") if k in given]
        if len(kinds) > 1:
            raise FieldProblem(
                kinds[1], f"a rule has one condition besides status, not {' and '.join(kinds)}"
            )
        if "body_path" in given and len(tests) != 1:
            raise FieldProblem("body_path", "takes exactly one of equals, in, not_in, exists")
        if "header" in given and (len(tests) != 1 or tests[0] not in ("equals", "in_")):
            raise FieldProblem("header", "takes exactly one of equals, in")
        if tests and not ({"body_path", "header"} & given):
            raise FieldProblem(shown[0], "needs body_path or header: what it compares")
        if not kinds and self.status is None:
            raise FieldProblem(
                "action", "a rule needs a status or a condition (body_path, body_contains, header)"
            )
        return self

    def statuses(self) -> list[int] | None:
        return [self.status] if isinstance(self.status, int) else self.status


class Retry(_Strict):
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    backoff: Literal["exponential", "fixed"] = "exponential"
    initial_delay_seconds: Annotated[float, Field(ge=0, le=3600)] = 1.0
    max_delay_seconds: Annotated[float, Field(ge=0, le=3600)] = 60.0
    retry_on_status: list[Annotated[int, Field(ge=400, le=599)]] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_STATUS)
    )
    max_retry_after_seconds: Annotated[float, Field(ge=0)] = 300.0

    @model_validator(mode="after")
    def _delays(self) -> Retry:
        if self.max_delay_seconds < self.initial_delay_seconds:
            raise FieldProblem(
                "max_delay_seconds",
                f"must be at least initial_delay_seconds ({self.initial_delay_seconds:g})",
            )
        return self


class RateLimit(_Strict):
    requests_per_second: Annotated[float, Field(gt=0, le=100_000)] | None = None
    remaining_header: str | None = Field(
        None, description="the response header with the requests left (X-RateLimit-Remaining)"
    )
    reset_header: str | None = Field(None, description="the response header saying when the budget resets")
    reset_format: Literal["epoch_seconds", "seconds", "http_date"] = "epoch_seconds"
    min_remaining: Annotated[int, Field(ge=0)] | None = Field(
        None, description="at or below this every worker waits for the reset; default: the run's concurrency"
    )

    @model_validator(mode="after")
    def _reset_too(self) -> RateLimit:
        if self.remaining_header and not self.reset_header:
            raise FieldProblem("reset_header", "required with remaining_header: when the budget comes back")
        return self


class Dedup(_Strict):
    ignore_fields: list[Annotated[str, Field(min_length=1), AfterValidator(check_path)]] = Field(
        default_factory=list, description=f"fields left out of the content hash: {PATH_HELP}, each"
    )


class Events(_Strict):
    pubsub: str | None = None
    topic: str | None = None


def _check_span(value: str | None) -> str | None:
    if value is not None:
        try:
            parse_span(value)
        except ScheduleError as exc:
            raise ValueError(str(exc)) from None
    return value


Span = Annotated[str, AfterValidator(_check_span)]
# A YAML date (2024-01-01 unquoted) arrives as a date; quoted, as text: both are instants here.
InstantValue = datetime | date | str


def _instant_of(value: InstantValue) -> datetime:
    instant = templates.as_instant(value)
    if not isinstance(instant, datetime):
        raise ValueError(
            f"must be an ISO-8601 date or date-time, e.g. 2024-01-01 or 2024-01-01T00:00:00Z (got {value!r})"
        )
    return instant


class DataWindow(_Strict):
    """How a scheduled run picks its data interval (SOURCES.md §7)."""

    since: Literal["ticks", "last_success"] = Field(
        "ticks",
        description="ticks: [the tick before, the tick); last_success: from the end of the last succeeded"
        " window to the tick",
    )
    initial: InstantValue | None = Field(
        None, description="last_success: the first run's start (default: the tick before)"
    )
    step: Span | None = Field(None, description="split the interval into windows of at most this (7d, 6h)")
    lookback: Span | None = Field(None, description="start this much before the last success's end")
    lag: Span | None = Field(None, description="end this much before the tick (data still arriving)")
    max_span: Span | None = Field(None, description="at most this much per run; the rest is the next run's")

    @field_validator("initial")
    @classmethod
    def _initial(cls, v: InstantValue | None) -> InstantValue | None:
        if v is not None:
            _instant_of(v)
        return v

    @model_validator(mode="after")
    def _last_success_fields(self) -> DataWindow:
        if self.since == "ticks":
            for name in ("initial", "step", "lookback", "lag", "max_span"):
                if name in self.model_fields_set:
                    raise FieldProblem(
                        name, "applies with since: last_success (since: ticks covers the schedule interval)"
                    )
        spans = self.spans()
        widest, lookback = spans["max_span"], spans["lookback"]
        if widest is not None and lookback is not None and widest <= lookback:
            raise FieldProblem(
                "max_span", f"must be longer than lookback ({self.lookback}), or a run never gets further"
            )
        return self

    @property
    def initial_instant(self) -> datetime | None:
        return _instant_of(self.initial) if self.initial is not None else None

    def spans(self) -> dict[str, timedelta | None]:
        """step, lookback, lag and max_span as timedeltas (None: not set)."""
        return {
            name: parse_span(text) if (text := getattr(self, name)) else None
            for name in ("step", "lookback", "lag", "max_span")
        }


class Incremental(_Strict):
    """A mark kept between runs (SOURCES.md §7): the highest value of a record field, or a sync token."""

    cursor_path: str | None = Field(
        None, description=f"a field of each record; the state is the highest value seen: {PATH_HELP}"
    )
    token_path: str | None = Field(
        None,
        description=f"instead: an opaque sync token in the last page; the state is the last one: {PATH_HELP}",
    )
    initial_value: str | int | float | date | datetime | None = Field(
        None, description="{incremental.start} before there is a state (absent: left out of the request)"
    )
    per_item: bool | None = Field(
        None, description="one state per iteration item (default: true when iterating)"
    )
    expired_status: list[Annotated[int, Field(ge=400, le=599)]] = Field(
        default_factory=lambda: [410, 412],
        description="the API expired the state sent (a sync token): warn and start the item over from"
        " initial_value",
    )

    @field_validator("cursor_path", "token_path")
    @classmethod
    def _paths(cls, v: str | None) -> str | None:
        return check_path(v)

    @field_validator("initial_value", mode="before")
    @classmethod
    def _initial(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError(f"must be a text, a number or a date (got {v!r})")
        if isinstance(v, datetime):
            return (v if v.tzinfo else v.replace(tzinfo=UTC)).isoformat()
        if isinstance(v, date):
            return v.isoformat()
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> Incremental:
        if self.cursor_path and self.token_path:
            raise FieldProblem(
                "token_path",
                "set cursor_path (the highest value of a record field) or token_path (a sync token),"
                " not both",
            )
        if not self.cursor_path and not self.token_path:
            raise FieldProblem(
                "cursor_path",
                "set cursor_path (a field of each record, e.g. updated_at) or token_path (a sync token in"
                " the last page)",
            )
        return self

    @property
    def kind(self) -> Literal["cursor", "token"]:
        return "cursor" if self.cursor_path else "token"


# -- reports: non-JSON bodies and asynchronous jobs (SOURCES.md §8) ----------------------------------

ResponseFormatName = Literal["json", "jsonl", "csv", "tsv", "xml"]
ROW_FORMATS = ("jsonl", "csv", "tsv")  # the body is a list of records, parsed (and streamed) row by row
# what the paginator reads of a body that has no JSON: the types and fields that work on rows
ROW_PAGINATION = ("none", "page_number", "offset", "link_header", "cursor")
JSON_PAGINATION_FIELDS = ("next_url_path", "has_more_path", "done_path", "total_path")


class CsvOptions(_Strict):
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] | None = Field(
        None, description="one character; default: , for csv, a tab for tsv"
    )
    header: bool = Field(
        True,
        description="the first line names the columns (rows become objects);"
        " false: each row is a list of strings",
    )
    quote: Annotated[str, Field(max_length=1)] | None = Field(
        None, description='the quote character; "" for none; default: " for csv, none for tsv (IANA TSV)'
    )


class ResponseFormat(_Strict):
    format: ResponseFormatName = Field(
        "json", description="what the body is: json, jsonl (a JSON value per line), csv, tsv or xml"
    )
    compression: Literal["auto", "gzip", "none"] = Field(
        "auto",
        description="the body's own compression (Content-Encoding is always decoded): auto = gzip when the"
        " body starts with gzip's magic bytes",
    )
    csv: CsvOptions = Field(default_factory=CsvOptions, description="csv and tsv: how rows are written")


JobStatus = str | int
CallUrl = Annotated[str, Field(min_length=1), AfterValidator(check_url)]


class JobCreate(_Strict):
    method: Literal["GET", "POST"] = "POST"
    url: CallUrl = Field(description="the call that creates the report; templates")
    body: Any = Field(None, description="POST JSON body; templates inside string values")

    @model_validator(mode="after")
    def _body(self) -> JobCreate:
        if self.method == "GET" and self.body is not None:
            raise FieldProblem("body", "a body needs method: POST")
        return self


class JobPoll(_Strict):
    url: CallUrl = Field(description="GET until done; {job.id} and templates")
    every_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(30.0, description="wait between polls")
    timeout_seconds: Annotated[float, Field(gt=0, le=7 * 86400)] = Field(
        3600.0, description="a job not done by then fails the item with its last status"
    )


class JobDownload(_Strict):
    url_path: Annotated[str, Field(min_length=1), AfterValidator(check_path)] = Field(
        description=f"where the finished job's download URL (or list of URLs) is: {PATH_HELP}"
    )
    credentials: bool = Field(
        False,
        description="send request auth and headers with the downloads (same origin only); false: presigned"
        " URLs, fetched with no credentials",
    )
    timeout_seconds: Annotated[float, Field(gt=0, le=86400)] = Field(
        3600.0, description="bounds each download, connect to last byte"
    )


class Job(_Strict):
    """An asynchronous report: create it, poll it until done, download every URL it hands out."""

    create: JobCreate
    id_path: Annotated[str, Field(min_length=1), AfterValidator(check_path)] = Field(
        description=f"where the created job's id is: {PATH_HELP}"
    )
    poll: JobPoll
    status_path: Annotated[str, Field(min_length=1), AfterValidator(check_path)] = Field(
        description=f"where the poll answer's status is: {PATH_HELP}"
    )
    done: Annotated[list[JobStatus], Field(min_length=1)] = Field(description="statuses that mean done")
    failed: list[JobStatus] = Field(default_factory=list, description="statuses that mean failed")
    message_path: Annotated[str, AfterValidator(check_path)] | None = Field(
        None, description="where a failed job's own message is, for the item's error"
    )
    download: JobDownload

    @model_validator(mode="after")
    def _statuses(self) -> Job:
        both = [s for s in self.done if s in self.failed]
        if both:
            raise FieldProblem("failed", f"{both[0]!r} is in done and in failed")
        return self


_STAND_IN_URL = "https://job.create.url.invalid"
# What `request` may hold beside a job: the auth and headers of create and poll.
_NOT_WITH_JOB = {
    "base_url": "the calls are job.create.url and job.poll.url",
    "method": "the create call's method is job.create.method",
    "body": "the create call's body is job.create.body",
    "parameters": "write the query into job.create.url",
    "raw_parameters": "write the query into job.create.url",
    "graphql": "a job is created by job.create",
}


class Ingestion(_Strict):
    mode: Literal["scheduled_pull", "blob_trigger"] = "scheduled_pull"
    schedule: str | None = Field(
        None, description="5-field cron or @hourly/@daily/...; @every/6 fields for DAPR"
    )
    timezone: str | None = Field(None, description="IANA zone, e.g. Europe/Berlin")
    deadline_seconds: Annotated[int, Field(ge=60, le=7 * 86400)] = Field(
        3600, description="longest a run may take (CronJob activeDeadlineSeconds; stale run records)"
    )
    secrets: dict[SecretName, NamedSecret] = Field(
        default_factory=dict,
        description="{name: {secret_store, secret_key}}; {secret.name} in request parameters, headers, body",
    )
    request: Request | None = None
    records: Records | None = None
    iteration: Iteration | None = None
    pagination: Pagination = Field(default_factory=Pagination)
    response_actions: list[ResponseAction] = Field(
        default_factory=list, description="what a response means, checked before the retry policy"
    )
    retry: Retry = Field(default_factory=Retry)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    dedup: Dedup = Field(default_factory=Dedup)
    events: Events = Field(default_factory=Events)
    window: DataWindow = Field(default_factory=DataWindow)
    incremental: Incremental | None = Field(
        None, description="a cursor or sync token kept between runs (needs records for cursor_path)"
    )
    response: ResponseFormat | None = Field(None, description="what the body is (default json)")
    job: Job | None = Field(None, description="an asynchronous report: create, poll, download")

    @model_validator(mode="before")
    @classmethod
    def _job_request(cls, data: Any) -> Any:
        """With ``job``, ``request`` holds only auth and headers; its URL, method and body are the create
        call's (so planning renders the create call per item like any request)."""
        if not isinstance(data, dict) or not isinstance(data.get("job"), dict):
            return data
        request = data.get("request") or {}
        if not isinstance(request, dict):
            return data
        for name, why in _NOT_WITH_JOB.items():
            if name in request:
                raise FieldProblem(f"request.{name}", f"not used with job: {why}")
        create = data["job"].get("create")
        create = create if isinstance(create, dict) else {}
        url = create.get("url")
        try:
            check_url(url if isinstance(url, str) else "")
        except ValueError:
            url = _STAND_IN_URL  # job.create says what is wrong with it: one error, not a second at request
        method = create.get("method", "POST")
        filled = {**request, "base_url": url}
        if method in ("GET", "POST"):
            filled["method"] = method
        if method == "POST" and create.get("body") is not None:
            filled["body"] = create["body"]
        return {**data, "request": filled}

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None:
            target = (info.context or {}).get("target", "k8s")
            try:
                parse_schedule(v, target)
            except ScheduleError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str | None) -> str | None:
        try:
            parse_timezone(v)
        except ScheduleError as exc:
            raise ValueError(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _pull_needs(self) -> Ingestion:
        if self.mode != "scheduled_pull":
            return self
        if self.request is None:
            raise FieldProblem("request", "required for mode scheduled_pull")
        posts = self.request.method == "POST" or self.request.graphql is not None
        if self.pagination.inject == "body" and not posts:
            raise FieldProblem("pagination.inject", "inject: body needs method: POST (or request.graphql)")
        alias = self.pagination.stop_when_empty_path
        if self.records is not None and self.records.path and alias and alias != self.records.path:
            raise FieldProblem(
                "pagination.stop_when_empty_path",
                f"is an alias of records.path, which says '{self.records.path}': keep records.path only",
            )
        self._incremental_fits()
        # a child's templates may name its ancestors' items: checked across sources by the loader
        problem = self.template_problem(None if self.parent else ()) or self.auth_template_problem()
        if problem:
            raise FieldProblem(*problem)
        return self

    def _incremental_fits(self) -> None:
        inc = self.incremental
        if inc is None:
            return
        if inc.cursor_path and self.records is None and not self.pagination.stop_when_empty_path:
            raise FieldProblem(
                "incremental.cursor_path",
                "reads a field of each record: set records.path to where a page's records are"
                " (records: {} when each page is a list)",
            )
        iteration = self.iteration
        if inc.per_item and iteration is None:
            raise FieldProblem("incremental.per_item", "needs iteration: without items there is one state")
        if self.per_item_state and iteration is not None and iteration.batch is not None:
            raise FieldProblem(
                "incremental.per_item",
                "iteration.batch fetches several items in one request, which cannot each send their own"
                " state: set per_item: false (one state for the source)",
            )
        if iteration is not None and not self.per_item_state and inc.token_path:
            raise FieldProblem(
                "incremental.per_item",
                "a sync token belongs to the item whose pages carried it: keep per_item: true with"
                " token_path",
            )
        if iteration is not None and not self.per_item_state and iteration.shards > 1:
            raise FieldProblem(
                "incremental.per_item",
                "with iteration.shards each pod fetches a share of the items, and one state for the source"
                " would move past the other pods' items: keep per_item: true",
            )

    @property
    def per_item_state(self) -> bool:
        """One incremental state per iteration item (``incremental.per_item``, default when iterating)."""
        inc = self.incremental
        if inc is None or self.iteration is None:
            return False
        return inc.per_item if inc.per_item is not None else True

    @model_validator(mode="after")
    def _reports(self) -> Ingestion:
        response, job = self.response, self.job
        fmt = response.format if response is not None else "json"
        if response is not None and "csv" in response.model_fields_set and fmt not in ("csv", "tsv"):
            raise FieldProblem("response.csv", f"applies to format csv or tsv, not {fmt}")
        streamed = fmt in ROW_FORMATS and self.records is not None and self.records.split
        if self.request is not None and self.request.max_response_bytes > MAX_HELD_BYTES and not streamed:
            raise FieldProblem(
                "request.max_response_bytes",
                f"at most {MAX_HELD_BYTES} (1 GiB) for a body held in memory ({fmt}); only jsonl, csv and"
                " tsv rows with records.split stream, and take more",
            )
        if fmt in ROW_FORMATS:
            if self.records is not None and self.records.path:
                raise FieldProblem(
                    "records.path", f"{fmt} rows are the records: records.path applies to json and xml"
                )
            self._rows_paginate(fmt)
        if job is None:
            return self
        if self.pagination.type != "none":
            raise FieldProblem(
                "pagination.type", "a job's downloads are its pages: use pagination with no job"
            )
        if self.iteration is not None and self.iteration.foreach == JOB_VARIABLE:
            raise FieldProblem(
                "iteration.foreach",
                f"'{JOB_VARIABLE}' names the job ({{job.id}} in job.poll.url); pick another name",
            )
        if job.poll.timeout_seconds > self.deadline_seconds:
            raise FieldProblem(
                "job.poll.timeout_seconds",
                f"{job.poll.timeout_seconds:g} is longer than deadline_seconds ({self.deadline_seconds}):"
                " the run would be stopped first; raise deadline_seconds",
            )
        return self

    def _rows_paginate(self, fmt: str) -> None:
        """Rows have no JSON to read a next cursor, URL or flag from."""
        page = self.pagination
        hint = "none, page_number, offset, link_header, or cursor with cursor_from header or last_record"
        if page.type not in ROW_PAGINATION or (page.type == "cursor" and page.cursor_from == "body"):
            where = "pagination.cursor_from" if page.type == "cursor" else "pagination.type"
            raise FieldProblem(where, f"reads a JSON body, and a {fmt} body has none: use {hint}")
        for name in JSON_PAGINATION_FIELDS:
            if getattr(page, name):
                raise FieldProblem(f"pagination.{name}", f"reads a JSON body, and a {fmt} body has none")

    @property
    def parent(self) -> str | None:
        """The source whose records are this source's items (``iteration.from_source``)."""
        return self.iteration.from_source if self.iteration is not None else None

    @property
    def records_path(self) -> str | None:
        """Where a page's records are: ``records.path``, else its alias ``stop_when_empty_path``."""
        if self.records is not None and self.records.path:
            return self.records.path
        return self.pagination.stop_when_empty_path

    def template_places(self) -> list[tuple[str, Any]]:
        """(field, value) of every field that holds templates."""
        assert self.request is not None
        places: list[tuple[str, Any]] = [
            ("request.base_url", self.request.base_url),
            ("request.parameters", self.request.parameters),
            ("request.headers", self.request.headers),
            ("request.body", self.request.body),
        ]
        if self.job is not None:  # request's URL and body are the create call's (``_job_request``)
            places = [
                ("job.create.url", self.job.create.url),
                ("job.create.body", self.job.create.body),
                ("request.headers", self.request.headers),
                ("job.poll.url", self.job.poll.url),
            ]
        if self.request.graphql is not None:
            places.append(("request.graphql.variables", self.request.graphql.variables))
        if self.iteration is not None and self.iteration.linkage:
            places.append(("iteration.linkage", self.iteration.linkage))
        return places

    def auth_places(self) -> list[tuple[str, Any]]:
        """(field, value) of every templated field of ``request.oauth2`` / ``request.session``."""
        assert self.request is not None
        oauth2, session = self.request.oauth2, self.request.session
        places: list[tuple[str, Any]] = []
        if oauth2 is not None:
            for name in ("client_id", "client_secret", "refresh_token", "extra_params"):
                places.append((f"request.oauth2.{name}", getattr(oauth2, name)))
            if oauth2.jwt is not None:
                places.append(("request.oauth2.jwt.private_key", oauth2.jwt.private_key))
                places.append(("request.oauth2.jwt.claims", oauth2.jwt.claims))
        if session is not None:
            places.append(("request.session.login.headers", session.login.headers))
            places.append(("request.session.login.body", session.login.body))
        return [(where, value) for where, value in places if value is not None]

    def auth_template_problem(self) -> tuple[str, str] | None:
        """The auth blocks take ``{secret.NAME}`` only (no item, window or page: one token per run), and a
        credential field is one whole ``{secret.NAME}``, never a value written in the config."""
        for where, value in self.auth_places():
            try:
                fields = templates.template_fields(value)
            except templates.TemplateSyntaxError as exc:
                return where, str(exc)
            for fld in fields:
                if fld.root != templates.SECRET_VARIABLE:
                    return where, (
                        f"template '{{{fld.expression}}}': the auth blocks take {{secret.NAME}} only"
                        " (one token serves the whole run)"
                    )
                problem = _secret_problem(fld, where, list(self.secrets))
                if problem:
                    return where, problem
            if where.rsplit(".", 1)[-1] in CREDENTIAL_FIELDS and not _one_secret(value):
                return where, (
                    f"a credential is not written in the config: declare it in ingestion.secrets and"
                    f" write {{secret.NAME}} here (got a value of {len(value)} characters)"
                )
        return None

    def template_problem(self, ancestors: Sequence[str] | None) -> tuple[str, str] | None:
        """The first template that is malformed or names an unknown variable: (field, message), else None.

        ``ancestors``: the ``foreach`` names of the parent chain, which a child's templates may use too;
        None when not known yet (any other root passes; the loader checks it across sources)."""
        foreach = self.iteration.foreach if self.iteration is not None else None
        incremental, job = self.incremental is not None, self.job is not None
        known = _known_variables(foreach, ancestors or (), self.pagination.type, incremental)
        for where, value in self.template_places():
            problem = _place_problem(
                where,
                value,
                known,
                ancestors is not None,
                list(self.secrets),
                incremental=incremental,
                job=job,
            )
            if problem:
                return where, problem
        return None


def raw_template_problems(ingestion: Any) -> list[tuple[str, str]]:
    """(field, message) of each template field of a raw ``ingestion`` mapping that is malformed or names an
    unknown variable, for a config that failed validation elsewhere: the loader reports these together with
    the schema's errors ("every problem of every file in one pass"). Values of the wrong type are skipped
    (the schema names them)."""
    if not isinstance(ingestion, dict):
        return []

    def part(name: str) -> dict[str, Any]:
        value = ingestion.get(name)
        return value if isinstance(value, dict) else {}

    request, iteration, pagination = part("request"), part("iteration"), part("pagination")
    foreach = iteration.get("foreach") if isinstance(iteration.get("foreach"), str) else None
    incremental = isinstance(ingestion.get("incremental"), dict)
    known = _known_variables(foreach, (), pagination.get("type"), incremental)
    child = iteration.get("from_source") is not None  # an ancestor's names are checked across sources
    secrets = list(part("secrets"))
    places: list[tuple[str, Any]] = [
        (f"request.{name}", request[name])
        for name in ("base_url", "parameters", "headers", "body")
        if name in request
    ]
    graphql = request.get("graphql")
    if isinstance(graphql, dict) and "variables" in graphql:
        places.append(("request.graphql.variables", graphql["variables"]))
    if iteration.get("linkage"):
        places.append(("iteration.linkage", iteration["linkage"]))
    out = []
    for where, value in places:
        if not isinstance(value, str | dict | list):
            continue
        problem = _place_problem(
            where, value, known, not child, secrets, incremental=incremental, job="job" in ingestion
        )
        if problem:
            out.append((where, problem))
    return out


def _known_variables(
    foreach: str | None, ancestors: Sequence[str], pagination_type: Any, incremental: bool = False
) -> dict[str, tuple[str, ...]]:
    known = dict(templates.BUILTIN_VARIABLES)
    if foreach is not None:
        known[foreach] = ()
    known.update({name: () for name in ancestors})
    if pagination_type in PAGE_TEMPLATED:
        known[PAGE_VARIABLE] = PAGE_FIELDS
    if incremental:
        known[templates.INCREMENTAL_VARIABLE] = templates.INCREMENTAL_FIELDS
    return known


def _place_problem(
    where: str,
    value: Any,
    known: dict[str, tuple[str, ...]],
    all_known: bool,
    secrets: list[str],
    *,
    incremental: bool = False,
    job: bool = False,
) -> str | None:
    """What is wrong with the templates of one field; ``all_known`` False lets unknown roots pass."""
    here = {**known, JOB_VARIABLE: JOB_FIELDS} if where == "job.poll.url" else known
    try:
        fields = templates.template_fields(value)
    except templates.TemplateSyntaxError as exc:
        return str(exc)
    for fld in fields:
        if not all_known and fld.root not in here:
            continue
        problem: str | None
        if fld.root == PAGE_VARIABLE and where in ("request.base_url", "iteration.linkage", *_JOB_URLS):
            problem = (
                f"template '{{{fld.expression}}}': page templates go in request.parameters, headers"
                " or body, where the paginator advances them"
            )
        elif fld.root == templates.SECRET_VARIABLE:
            problem = _secret_problem(fld, where, secrets)
        elif fld.root == templates.INCREMENTAL_VARIABLE and incremental:
            problem = _incremental_problem(fld, where) or _unknown_variable(fld, known)
        elif fld.root == templates.INCREMENTAL_VARIABLE:
            problem = (
                f"template '{{{fld.expression}}}' needs ingestion.incremental (cursor_path or"
                " token_path): the state it starts from"
            )
        elif fld.root == JOB_VARIABLE and job and fld.root not in here:
            problem = (
                f"template '{{{fld.expression}}}': the job's id is known only in job.poll.url (it"
                " comes from the create call's answer)"
            )
        else:
            problem = _unknown_variable(fld, here)
        if problem:
            return problem
    return None


CREDENTIAL_FIELDS = ("client_secret", "refresh_token", "private_key")


def _one_secret(value: str) -> bool:
    """``value`` is exactly one ``{secret.NAME}`` (nothing around it)."""
    parts = [p for p in templates.parse(value).parts if p != ""]
    return len(parts) == 1 and isinstance(parts[0], templates.Field)


# Where a secret may not go, and why.
_NO_SECRETS = {
    "request.base_url": "the URL path is stored with every document and shown in logs; send the secret as a"
    " query parameter (request.parameters) or a header (request.headers), where it is masked",
    "iteration.linkage": "linkage is stored in plain text with every document",
    "job.create.url": "the URL is shown in logs; send the secret in request.headers or job.create.body",
    "job.poll.url": "the URL is shown in logs; send the secret in request.headers",
}
_JOB_URLS = ("job.create.url", "job.poll.url")


def _secret_problem(fld: templates.Field, where: str, declared: list[str]) -> str | None:
    """``{secret.NAME}``: allowed in parameters, headers and body, for a NAME under ``ingestion.secrets``."""
    from difflib import get_close_matches

    if where in _NO_SECRETS:
        return f"template '{{{fld.expression}}}': a secret cannot go into {where}: {_NO_SECRETS[where]}"
    listed = f"declared in ingestion.secrets: {', '.join(sorted(declared))}"
    if len(fld.path) != 2:
        names = f" ({', '.join(sorted(declared))})" if declared else ""
        return f"template '{{{fld.expression}}}': write {{secret.NAME}}, NAME one of ingestion.secrets{names}"
    name = fld.path[1]
    if name in declared:
        return None
    if not declared:
        return (
            f"template '{{{fld.expression}}}' names undeclared secret '{name}';"
            f" declare it in ingestion.secrets as {name}: {{secret_store: STORE, secret_key: KEY}}"
        )
    hint = get_close_matches(name, declared, n=1)
    suggestion = f"; did you mean '{{secret.{hint[0]}}}'?" if hint else ""
    return f"template '{{{fld.expression}}}' names undeclared secret '{name}' ({listed}){suggestion}"


def _incremental_problem(fld: templates.Field, where: str) -> str | None:
    """``{incremental.start}``: in parameters, headers or body (left out when absent), in a known format."""
    if where in ("request.base_url", "iteration.linkage"):
        return (
            f"template '{{{fld.expression}}}': the state goes in request.parameters, headers or body, where"
            " a value with no state yet is left out"
        )
    spec = fld.format_spec
    if spec is not None and spec not in templates.EPOCH_FORMATS and "%" not in spec:
        return (
            f"template '{{{fld.expression}}}': format '{spec}' is not epoch, epoch_ms or a strftime pattern"
            " (such as %Y-%m-%dT%H:%M:%SZ)"
        )
    return None


def _unknown_variable(fld: templates.Field, known: dict[str, tuple[str, ...]]) -> str | None:
    from difflib import get_close_matches

    if fld.root not in known:
        hint = get_close_matches(fld.root, list(known), n=1)
        suggestion = f"; did you mean '{{{hint[0]}{fld.expression[len(fld.root) :]}}}'?" if hint else ""
        return (
            f"template '{{{fld.expression}}}' names unknown variable '{fld.root}'"
            f" (known: {', '.join(sorted(known))}){suggestion}"
        )
    allowed = known[fld.root]
    if allowed and (len(fld.path) != 2 or fld.path[1] not in allowed):
        return f"template '{{{fld.expression}}}': {fld.root} has the fields {', '.join(allowed)}"
    return None


class SourceConfig(BaseModel):
    """One source. Top-level sections other than these belong to the downstream pipeline and pass through."""

    model_config = ConfigDict(extra="allow", frozen=True)

    source_id: Annotated[str, Field(min_length=1, max_length=40, pattern=SOURCE_ID_RE)] = Field(
        description="lower-case DNS label, at most 40 characters"
    )
    display_name: str | None = None
    description: str | None = None
    enabled: bool = True
    ingestion: Ingestion

    @property
    def extra_sections(self) -> list[str]:
        return sorted(self.model_extra or {})

    @property
    def is_scheduled_pull(self) -> bool:
        return self.ingestion.mode == "scheduled_pull"

    @property
    def has_schedule(self) -> bool:
        """A ``scheduled_pull`` with a ``schedule``: rendered, registered and run by schedule. Without one, a
        source runs by hand or as another source's parent only."""
        return self.is_scheduled_pull and self.ingestion.schedule is not None


KNOWN_TOP_LEVEL = tuple(SourceConfig.model_fields)


def config_hash(raw: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a config document, as written (defaults are not filled in)."""
    return canonical_hash(raw)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of one source config file, as shipped in ``config/source-config.schema.json``."""
    schema = SourceConfig.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "pullctl source config"
    return schema

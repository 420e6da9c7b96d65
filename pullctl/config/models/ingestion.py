"""``ingestion``: the section that ties the blocks together, and its cross-block rules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from pullctl.config import templates
from pullctl.config.models.base import MAX_HELD_BYTES, FieldProblem, Strict, check_url
from pullctl.config.models.iteration import Iteration, Records
from pullctl.config.models.pagination import JOB_VARIABLE, Pagination
from pullctl.config.models.policy import Dedup, Events, RateLimit, ResponseAction, Retry
from pullctl.config.models.reports import (
    JSON_PAGINATION_FIELDS,
    ROW_FORMATS,
    ROW_PAGINATION,
    Job,
    ResponseFormat,
)
from pullctl.config.models.request import NamedSecret, Request, SecretName
from pullctl.config.models.template_checks import (
    CREDENTIAL_FIELDS,
    known_variables,
    one_secret,
    place_problem,
    secret_problem,
)
from pullctl.config.models.window import DataWindow, Incremental
from pullctl.config.schedule import ScheduleError, parse_schedule, parse_timezone

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


class Ingestion(Strict):
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
                problem = secret_problem(fld, where, list(self.secrets))
                if problem:
                    return where, problem
            if where.rsplit(".", 1)[-1] in CREDENTIAL_FIELDS and not one_secret(value):
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
        known = known_variables(foreach, ancestors or (), self.pagination.type, incremental)
        for where, value in self.template_places():
            problem = place_problem(
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

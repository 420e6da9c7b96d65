"""What a response means and how calls are paced: ``response_actions``, ``retry``, ``rate_limit``;
``dedup`` and ``events``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

from pullctl.config.models.base import DEFAULT_RETRY_STATUS, PATH_HELP, FieldProblem, Strict, check_path


class ResponseAction(Strict):
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


class Retry(Strict):
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


class RateLimit(Strict):
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


class Dedup(Strict):
    ignore_fields: list[Annotated[str, Field(min_length=1), AfterValidator(check_path)]] = Field(
        default_factory=list, description=f"fields left out of the content hash: {PATH_HELP}, each"
    )


class Events(Strict):
    pubsub: str | None = None
    topic: str | None = None

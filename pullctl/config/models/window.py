"""The data interval of a run (``window``) and the state kept between runs (``incremental``)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from pullctl.config import templates
from pullctl.config.models.base import PATH_HELP, FieldProblem, Strict, check_path
from pullctl.config.schedule import ScheduleError, parse_span


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


class DataWindow(Strict):
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


class Incremental(Strict):
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

"""A run's data interval (``Window``): the schedule's latest one, or a backfill's sequence of them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property

from pullctl.config.models import SourceConfig
from pullctl.config.schedule import parse_schedule, parse_timezone
from pullctl.errors import OptionsError


@dataclass(frozen=True)
class Window:
    """A data interval: start inclusive, end exclusive."""

    start: datetime
    end: datetime

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}

    @cached_property
    def stored(self) -> dict[str, str]:
        """``as_dict``, made once: every document of a run holds this one dict (never changed)."""
        return self.as_dict()

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Window:
        return cls(datetime.fromisoformat(data["start"]), datetime.fromisoformat(data["end"]))


def scheduled_window(config: SourceConfig, now: datetime) -> Window:
    """The window of the latest schedule tick at or before ``now``: [tick before, that tick)."""
    ing = config.ingestion
    if not ing.schedule:
        return Window(now - timedelta(days=1), now)
    start, end = parse_schedule(ing.schedule, "dapr").window_ending_at_or_before(
        now, parse_timezone(ing.timezone)
    )
    return Window(start.astimezone(UTC), end.astimezone(UTC))


def backfill_windows(start: datetime, end: datetime, step: timedelta) -> list[Window]:
    if end <= start:
        raise OptionsError([("end", f"({end.isoformat()}) must be after the start ({start.isoformat()})")])
    if step <= timedelta(0):
        raise OptionsError([("step", f"({step}) must be longer than zero")])
    count = -((start - end) // step)  # the windows, rounded up (the last one may be shorter)
    if count > 10_000:
        detail = f"makes {count} windows of the backfill, at most 10000: use a longer step"
        raise OptionsError([("step", detail)])
    windows: list[Window] = []
    t = start
    while t < end:
        windows.append(Window(t, min(t + step, end)))
        t += step
    return windows

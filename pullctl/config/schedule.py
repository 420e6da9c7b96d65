"""Schedules in the two dialects pullctl targets, their ticks, and the data windows they imply.

Kubernetes CronJobs take 5-field cron and the macros below. DAPR Jobs take 6 fields (seconds first),
the same macros and ``@every <duration>`` (Go duration syntax: ``1h30m``, ``90s``).
A scheduled run's window ends at the tick that started it and begins at the tick before (``since: ticks``);
with ``window.since: last_success`` it begins where the last succeeded window ended (``catch_up``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Target = Literal["k8s", "dapr"]

MACROS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SECONDS_FIELD = re.compile(r"^(\*|\d{1,2}(-\d{1,2})?)(/\d{1,2})?(,(\*|\d{1,2}(-\d{1,2})?)(/\d{1,2})?)*$")


class ScheduleError(ValueError):
    pass


def parse_duration(text: str) -> timedelta:
    """A Go duration (``1h30m``, ``45s``); raise ``ScheduleError`` when it is not one or not positive."""
    text = text.strip()
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ScheduleError(f"'{text}' is not a duration like 30s, 15m, 1h30m")
    if total <= 0:
        raise ScheduleError(f"the duration '{text}' must be longer than zero")
    return timedelta(seconds=total)


_DAYS = re.compile(r"(\d+)d(.*)")


def parse_span(text: str) -> timedelta:
    """A span: days and/or a Go duration (``7d``, ``1d12h``, ``6h``, ``90s``); ``ScheduleError`` when it is
    not one or not positive."""
    m = _DAYS.fullmatch(text.strip())
    days = timedelta(days=int(m.group(1))) if m else timedelta()
    rest = m.group(2) if m else text
    try:
        span = days + (parse_duration(rest) if rest.strip() else timedelta())
    except ScheduleError:
        raise ScheduleError(f"'{text}' is not a span like 7d, 1d12h, 6h, 30m or 90s") from None
    if span <= timedelta():
        raise ScheduleError(f"the span '{text}' must be longer than zero")
    return span


def catch_up(
    mark: datetime | None,
    initial: datetime,
    tick: datetime,
    *,
    step: timedelta | None = None,
    lookback: timedelta | None = None,
    lag: timedelta | None = None,
    max_span: timedelta | None = None,
) -> list[tuple[datetime, datetime]]:
    """The windows a ``since: last_success`` run covers, oldest first: from the end of the last succeeded
    window (``mark``, minus ``lookback``; ``initial`` when there is none) to ``tick`` minus ``lag``, at most
    ``max_span`` of it (the rest is the next run's), split into windows of at most ``step``. Empty when
    there is nothing yet to fetch. Pure."""
    start = initial if mark is None else mark - (lookback or timedelta())
    end = tick - (lag or timedelta())
    if max_span is not None:
        end = min(end, start + max_span)
    windows: list[tuple[datetime, datetime]] = []
    t = start
    while t < end:
        nxt = min(t + step, end) if step else end
        windows.append((t, nxt))
        t = nxt
    return windows


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: a 5-field cron (``cron``), optionally with a seconds field, or a fixed interval."""

    text: str
    cron: str | None  # 5-field form, for cronsim
    seconds: str | None  # the seconds field of a 6-field schedule
    every: timedelta | None

    @property
    def dapr_only(self) -> bool:
        return self.every is not None or self.seconds is not None

    def dapr_form(self) -> str:
        """The schedule as DAPR Jobs take it: 6 fields, or ``@every`` / a macro as written."""
        if self.every is not None or self.text.startswith("@"):
            return self.text
        return f"{self.seconds or '0'} {self.cron}"

    def ticks(self, after: datetime, tz: ZoneInfo | timezone, count: int) -> list[datetime]:
        """The next ``count`` ticks strictly after ``after``."""
        out: list[datetime] = []
        if self.every is not None:
            t = after
            for _ in range(count):
                t = t + self.every
                out.append(t)
            return out
        from cronsim import CronSim

        assert self.cron is not None
        it = CronSim(self.cron, after.astimezone(tz).replace(second=0, microsecond=0))
        for tick in it:
            if tick > after:
                out.append(tick)
            if len(out) == count:
                break
        return out

    def window_ending_at_or_before(self, now: datetime, tz: ZoneInfo | timezone) -> tuple[datetime, datetime]:
        """[previous tick, latest tick <= now): the window of the run that tick started."""
        if self.every is not None:
            return now - self.every, now
        from cronsim import CronSim

        assert self.cron is not None
        local = now.astimezone(tz)
        floor = local.replace(second=0, microsecond=0)
        it = CronSim(self.cron, floor + timedelta(minutes=1), reverse=True)
        end = next(it)
        while end > local:
            end = next(it)
        start = next(it)
        while start >= end:
            start = next(it)
        return start, end


def parse_schedule(text: str, target: Target = "k8s") -> Schedule:
    """Parse ``text`` for ``target``; raise ``ScheduleError`` with what is wrong and what to write instead."""
    from cronsim import CronSim, CronSimError

    raw = text.strip()
    if raw.startswith("CRON_TZ=") or raw.startswith("TZ="):
        raise ScheduleError("set the time zone with 'timezone:', not a CRON_TZ=/TZ= prefix in the schedule")
    if raw.startswith("@every"):
        every = parse_duration(raw[len("@every") :])
        if target != "dapr":
            raise ScheduleError(
                f"'{raw}' is understood only by DAPR Jobs; use a 5-field cron for Kubernetes CronJobs,"
                " or validate with --target dapr and deploy with 'pullctl jobs sync'"
            )
        return Schedule(raw, None, None, every)
    if raw.startswith("@"):
        if raw not in MACROS:
            raise ScheduleError(f"unknown macro '{raw}'; use one of {', '.join(MACROS)} or a 5-field cron")
        return Schedule(raw, MACROS[raw], None, None)
    fields = raw.split()
    seconds: str | None = None
    if len(fields) == 6:
        if target != "dapr":
            raise ScheduleError(
                f"'{raw}' has 6 fields (seconds first), which only DAPR Jobs understand; Kubernetes takes"
                " 5 fields (minute hour day-of-month month day-of-week), or validate with --target dapr"
                " and deploy with 'pullctl jobs sync'"
            )
        seconds, fields = fields[0], fields[1:]
        if not _SECONDS_FIELD.match(seconds) or any(
            int(n) > 59 for n in re.findall(r"\d+", seconds.split("/")[0])
        ):
            raise ScheduleError(f"bad seconds field '{seconds}' in '{raw}' (0-59, *, ranges, lists, steps)")
    elif len(fields) != 5:
        raise ScheduleError(
            f"'{raw}' has {len(fields)} fields; a cron schedule has 5"
            " (minute hour day-of-month month day-of-week), e.g. '0 6 * * *'"
        )
    cron = " ".join(fields)
    try:
        CronSim(cron, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ScheduleError(f"'{raw}' is not a valid cron schedule: {exc}") from None
    return Schedule(raw, cron, seconds, None)


def parse_timezone(name: str | None) -> ZoneInfo | timezone:
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"unknown time zone '{name}'; use an IANA name such as Etc/UTC or Europe/Berlin"
        ) from None

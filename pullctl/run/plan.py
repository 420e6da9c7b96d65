"""Config + window + items -> the fetch tasks of one run. Pure: no I/O, so it is cheap to test.

Items whose key, or a field a template needs, is missing or null are skipped with the reason, never
turned into a URL with ``None`` in it. Sharding keeps a stable share of the items: a hash of the key.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pullctl.config import templates
from pullctl.config.models import SourceConfig
from pullctl.config.schedule import ScheduleError, parse_duration, parse_schedule, parse_timezone
from pullctl.errors import UsageError

SCALARS = (str, int, float, bool)


@dataclass(frozen=True)
class Window:
    """A data interval: start inclusive, end exclusive."""

    start: datetime
    end: datetime

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Window:
        return cls(datetime.fromisoformat(data["start"]), datetime.fromisoformat(data["end"]))


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> Shard:
        m = re.fullmatch(r"(\d+)/(\d+)", text.strip())
        if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
            raise UsageError(f"--shard '{text}': expected I/N with 0 <= I < N, e.g. 0/4")
        return cls(int(m.group(1)), int(m.group(2)))


@dataclass(frozen=True)
class FetchTask:
    key: str
    url: str
    params: dict[str, str]
    headers: dict[str, str]
    body: Any
    linkage: dict[str, Any]


@dataclass
class Plan:
    source_id: str
    run_id: str
    window: Window
    tasks: list[FetchTask] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (item, reason)

    @property
    def items(self) -> int:
        return len(self.tasks) + len(self.skipped)


def scheduled_window(config: SourceConfig, now: datetime) -> Window:
    """The window of the latest schedule tick at or before ``now``: [tick before, that tick)."""
    ing = config.ingestion
    if not ing.schedule:
        return Window(now - timedelta(days=1), now)
    start, end = parse_schedule(ing.schedule, "dapr").window_ending_at_or_before(
        now, parse_timezone(ing.timezone)
    )
    return Window(start.astimezone(UTC), end.astimezone(UTC))


def parse_step(text: str) -> timedelta:
    """``1d``, ``6h``, ``30m``, ``1h30m``: a backfill step."""
    m = re.fullmatch(r"(\d+)d(.*)", text.strip())
    try:
        days = timedelta(days=int(m.group(1))) if m else timedelta()
        rest = m.group(2) if m else text
        step = days + (parse_duration(rest) if rest else timedelta())
    except ScheduleError:
        raise UsageError(f"--step '{text}': expected a duration such as 1d, 6h, 30m or 1h30m") from None
    if step <= timedelta():
        raise UsageError(f"--step '{text}' must be longer than zero")
    return step


def parse_instant(text: str, option: str) -> datetime:
    """An ISO-8601 date or date-time; naive values are UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{option} '{text}': expected an ISO-8601 date or time, e.g. 2026-01-31 or 2026-01-31T06:00Z"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def backfill_windows(start: datetime, end: datetime, step: timedelta) -> list[Window]:
    if end <= start:
        raise UsageError(f"--to ({end.isoformat()}) must be after --from ({start.isoformat()})")
    windows: list[Window] = []
    t = start
    while t < end:
        windows.append(Window(t, min(t + step, end)))
        t += step
    if len(windows) > 10_000:
        raise UsageError(
            f"the backfill has {len(windows)} windows; use a larger --step (at most 10000 windows)"
        )
    return windows


def shard_of(key: str, count: int) -> int:
    """A stable shard for ``key``: the same item always lands on the same shard."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % count


def item_key(item: dict[str, Any], key_field: str | None) -> Any:
    if key_field is not None:
        return item.get(key_field)
    return next((v for v in item.values() if isinstance(v, SCALARS)), None)


def default_linkage(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if isinstance(v, SCALARS)}


def parse_assignments(values: Sequence[str], option: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"{option} '{value}': expected NAME=VALUE")
        out.setdefault(name.strip(), []).append(rest)
    return out


def build_plan(
    config: SourceConfig,
    window: Window,
    items: list[dict[str, Any]] | None,
    run_id: str,
    *,
    shard: Shard | None = None,
    only: dict[str, list[str]] | None = None,
    overrides: dict[str, str] | None = None,
    limit: int | None = None,
    secrets: Mapping[str, str] | None = None,
) -> Plan:
    """The fetch tasks for ``items`` (None: a source without iteration), filtered, sharded and limited.

    ``secrets``: the resolved values of ``ingestion.secrets`` by name, for ``{secret.NAME}`` (run/secrets.py).
    A secret is rendered as it is: httpx percent-encodes it in the query, headers and body take it as is.
    """
    ing = config.ingestion
    assert ing.request is not None, "only scheduled_pull sources are planned"
    request = ing.request
    iteration = ing.iteration
    parameters: dict[str, Any] = {**request.parameters, **(overrides or {})}
    base = {
        "window": {"start": window.start, "end": window.end},
        "run": {"id": run_id},
        "source": {"id": config.source_id},
        templates.SECRET_VARIABLE: dict(secrets or {}),
    }
    known = set(templates.BUILTIN_VARIABLES) | ({iteration.foreach} if iteration else set())
    for name, value in (overrides or {}).items():
        for fld in templates.template_fields(value):
            if fld.root == templates.SECRET_VARIABLE:
                raise UsageError(
                    f"--set {name}={value}: a secret can only be used in the source config's request"
                )
            if fld.root not in known:
                raise UsageError(f"--set {name}={value}: unknown template variable '{fld.root}'")

    plan = Plan(config.source_id, run_id, window)
    entries: list[tuple[str, dict[str, Any]]] = []
    if iteration is None or items is None:
        entries.append((config.source_id, base))
    else:
        for index, item in enumerate(items):
            key = item_key(item, iteration.key)
            label = f"#{index}" if key is None else str(key)
            if key is None:
                field_name = iteration.key or "first scalar field"
                plan.skipped.append((label, f"key field '{field_name}' is missing or null"))
                continue
            if only and not all(str(item.get(k)) in vals for k, vals in only.items()):
                continue
            if shard and shard.count > 1 and shard_of(label, shard.count) != shard.index:
                continue
            entries.append((label, {**base, iteration.foreach: item}))
    if limit is not None:
        entries = entries[:limit]

    url_template = templates.parse(request.base_url)
    for label, context in entries:
        try:
            url = url_template.render(context, quote_values=True)
            params = {
                k: templates.parse(v).render(context) if isinstance(v, str) else _scalar(v)
                for k, v in parameters.items()
            }
            headers = {k: templates.render_header(v, context) for k, v in request.headers.items()}
            body = templates.render_value(request.body, context) if request.body is not None else None
            if iteration is not None and iteration.linkage is not None:
                linkage = {k: templates.parse(v).render(context) for k, v in iteration.linkage.items()}
            elif iteration is not None and items is not None:
                linkage = default_linkage(context[iteration.foreach])
            else:
                linkage = {}
        except templates.MissingValue as exc:
            plan.skipped.append((label, f"{exc}: the item cannot fill the request"))
            continue
        except ValueError as exc:
            plan.skipped.append((label, str(exc)))
            continue
        plan.tasks.append(FetchTask(label, url, params, headers, body, linkage))
    return plan


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

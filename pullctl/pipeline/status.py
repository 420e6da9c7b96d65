"""`pullctl status`: one row per source, from its config and the run records, for the 3 a.m. reader.

    source_status(sources, store, now)    -> list[SourceStatus], sorted by source id
    FailOn(stale=2, failed=True)          -> the rules ``--fail-on`` checks; ``SourceStatus.problems(rules)``

A source is **behind** by the schedule ticks that passed since its last successful run finished
(``intervals_behind``; 0 = it succeeded after its latest tick). A scheduled, enabled source that never
succeeded is behind without a number (``None``, shown as ``never``) and counts as stale. Pure reads: the store
is opened read-only by the caller, and nothing here writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pullctl.config.catalog import next_runs
from pullctl.config.loader import LoadedSource
from pullctl.config.schedule import parse_schedule, parse_timezone
from pullctl.pipeline.documents import RunRecord
from pullctl.pipeline.state import behind_seconds
from pullctl.pipeline.store import Store

MAX_INTERVALS = 1000  # ticks counted at most (an `@every 1s` source a year behind is "1000+" behind)
RECENT_RUNS = 10  # runs read per source to find the last finished one behind a running one


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    status: str
    trigger: str
    started_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, record: RunRecord) -> RunSummary:
        return cls(record.run_id, record.status, record.trigger, record.started_at, record.finished_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "trigger": self.trigger,
            "started_at": self.started_at.astimezone(UTC).isoformat(),
            "finished_at": self.finished_at.astimezone(UTC).isoformat() if self.finished_at else None,
        }


@dataclass(frozen=True)
class FailOn:
    """``--fail-on`` rules: ``stale=N`` (more than N intervals behind), ``failed``, ``partial`` (the last
    finished run ended so)."""

    stale: int | None = None
    failed: bool = False
    partial: bool = False


@dataclass(frozen=True)
class SourceStatus:
    source_id: str
    enabled: bool
    mode: str
    schedule: str | None
    timezone: str
    last_run: RunSummary | None  # the newest run, running or not
    last_finished: RunSummary | None  # the newest run that ended
    last_success: RunSummary | None
    intervals_behind: int | None  # ticks since the last success finished; None: never succeeded / no schedule
    failed_items: int  # of the last finished run: what `run --replay` would re-run
    pending_events: int  # stored documents whose event is not acknowledged yet
    next_run: datetime | None
    state_lag_seconds: float | None = None  # the furthest-behind incremental state (None: it keeps none)

    @property
    def scheduled(self) -> bool:
        return self.enabled and self.mode == "scheduled_pull" and bool(self.schedule)

    def problems(self, rules: FailOn) -> list[str]:
        """What ``rules`` find wrong with this source, one phrase each (empty: healthy)."""
        out = []
        if rules.stale is not None and self.scheduled:
            if self.last_success is None:
                out.append("stale: never succeeded")
            elif self.intervals_behind is not None and self.intervals_behind > rules.stale:
                out.append(
                    f"stale: {behind_text(self.intervals_behind)} intervals behind (more than {rules.stale})"
                )
        last = self.last_finished
        if last is not None and last.status == "failed" and rules.failed:
            out.append(f"failed: last run {last.run_id} failed")
        if last is not None and last.status == "partial" and rules.partial:
            out.append(f"partial: last run {last.run_id} was partial")
        return out

    def to_dict(self) -> dict[str, Any]:
        def summary(run: RunSummary | None) -> dict[str, Any] | None:
            return run.to_dict() if run else None

        return {
            "source_id": self.source_id,
            "enabled": self.enabled,
            "mode": self.mode,
            "schedule": self.schedule,
            "timezone": self.timezone,
            "last_run": summary(self.last_run),
            "last_success": summary(self.last_success),
            "intervals_behind": self.intervals_behind,
            "failed_items": self.failed_items,
            "pending_events": self.pending_events,
            "state_lag_seconds": self.state_lag_seconds,
            "next_run": self.next_run.astimezone(UTC).isoformat() if self.next_run else None,
        }


def behind_text(intervals: int) -> str:
    return f"{MAX_INTERVALS}+" if intervals >= MAX_INTERVALS else str(intervals)


def intervals_since(src: LoadedSource, since: datetime, now: datetime) -> int | None:
    """Schedule ticks of ``src`` in (``since``, ``now``], at most ``MAX_INTERVALS``; None without one."""
    ing = src.config.ingestion
    if not ing.schedule:
        return None
    ticks = parse_schedule(ing.schedule, "dapr").ticks(since, parse_timezone(ing.timezone), MAX_INTERVALS)
    return sum(1 for t in ticks if t <= now)


async def _state_lag(store: Store, source_id: str, now: datetime) -> float | None:
    """How far behind the source's furthest-behind state is (SOURCES §7), seconds; None without one."""
    states = await store.list_states(source_id)
    return round(max(behind_seconds(s, now) for s in states), 3) if states else None


async def source_status(sources: Sequence[LoadedSource], store: Store, now: datetime) -> list[SourceStatus]:
    """The status of each source in ``sources``, from ``store``'s run records and outbox."""
    rows = []
    for src in sorted(sources, key=lambda s: s.source_id):
        cfg = src.config
        recent = await store.list_runs(cfg.source_id, RECENT_RUNS)
        finished = next((r for r in recent if r.status != "running"), None)
        success = next((r for r in recent if r.status == "succeeded"), None)
        if success is None and len(recent) == RECENT_RUNS:
            found = await store.list_runs(cfg.source_id, 1, status="succeeded")
            success = found[0] if found else None
        behind = None
        if success is not None:
            behind = intervals_since(src, success.finished_at or success.started_at, now)
        upcoming = next_runs(cfg, now, 1)
        rows.append(
            SourceStatus(
                source_id=cfg.source_id,
                enabled=cfg.enabled,
                mode=cfg.ingestion.mode,
                schedule=cfg.ingestion.schedule,
                timezone=cfg.ingestion.timezone or "Etc/UTC",
                last_run=RunSummary.of(recent[0]) if recent else None,
                last_finished=RunSummary.of(finished) if finished else None,
                last_success=RunSummary.of(success) if success else None,
                intervals_behind=behind,
                failed_items=len(finished.failed_items) if finished else 0,
                pending_events=await store.count_pending_events(cfg.source_id),
                next_run=upcoming[0] if upcoming else None,
                state_lag_seconds=await _state_lag(store, cfg.source_id, now),
            )
        )
    return rows

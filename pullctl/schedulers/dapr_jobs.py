"""DAPR Jobs for scheduled pulls (DESIGN §3, §4a, §5): one job ``pull-<source_id>`` per enabled source.

    desired_jobs(sources)                  -> [DesiredJob] (pure): name, DAPR schedule, data
    plan_jobs(desired, registry, prune=...) -> [JobEntry] (pure): register/update/unchanged/delete/keep
    sync_jobs(dapr, store, sources, ...)    -> JobsPlan: the plan, sent to the sidecar, per-job errors
    follow_config_change(settings, ...)     -> None, or a warning that ``pullctl jobs sync`` must run

DAPR has no HTTP list endpoint for jobs, so the store's ``dapr_jobs`` registry is what ``sync`` knows it owns:
a job whose config hash matches the registry is unchanged (no write), a changed one is re-registered
(``overwrite: true`` replaces it in one call), and a registry entry with no source left is deleted (pruned).
An error on one job is recorded on its entry and the others go on; a sidecar that cannot be reached at all
ends the sync with one ``DaprError``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pullctl.config.loader import LoadedSource
from pullctl.config.schedule import parse_schedule
from pullctl.dapr import DaprClient
from pullctl.errors import DaprError, PullctlError
from pullctl.pipeline.store import JobRegistry
from pullctl.retry import AttemptFailed, GaveUp, Outcome, RetryPolicy, call_with_retries
from pullctl.settings import Settings

JOB_PREFIX = "pull-"
Action = Literal["register", "update", "unchanged", "delete", "keep"]
ACTIONS: tuple[Action, ...] = ("register", "update", "unchanged", "delete", "keep")
_TIMEZONE_HINT = (
    "; a 'timezone' becomes a CRON_TZ= prefix, which DAPR understands from 1.18.3:"
    " upgrade DAPR or remove 'timezone' (the schedule then runs in UTC)"
)


def job_name(source_id: str) -> str:
    return f"{JOB_PREFIX}{source_id}"


def source_id_of(name: str) -> str | None:
    """``pull-weather-api`` -> ``weather-api``; None for a name pullctl does not give its jobs."""
    if not name.startswith(JOB_PREFIX) or name == JOB_PREFIX:
        return None
    return name[len(JOB_PREFIX) :]


def dapr_schedule(src: LoadedSource) -> str:
    """The source's schedule as DAPR Jobs take it: 6 fields or a macro, ``CRON_TZ=<zone> `` when zoned.

    ``@every`` is a fixed interval that no time zone changes, so it never gets the prefix.
    """
    ingestion = src.config.ingestion
    assert ingestion.schedule is not None
    schedule = parse_schedule(ingestion.schedule, "dapr")
    form = schedule.dapr_form()
    if ingestion.timezone and schedule.every is None:
        return f"CRON_TZ={ingestion.timezone} {form}"
    return form


@dataclass(frozen=True)
class DesiredJob:
    name: str
    source_id: str
    schedule: str
    config_hash: str

    @property
    def data(self) -> dict[str, str]:
        return {"source_id": self.source_id, "config_hash": self.config_hash}


def desired_job(src: LoadedSource) -> DesiredJob | None:
    """The job of one source, or None when it has none (disabled, not ``scheduled_pull``, no schedule)."""
    if not (src.config.enabled and src.config.has_schedule):
        return None
    return DesiredJob(job_name(src.source_id), src.source_id, dapr_schedule(src), src.config_hash)


def desired_jobs(sources: Sequence[LoadedSource]) -> list[DesiredJob]:
    """One job per enabled ``scheduled_pull`` source, sorted by name. Pure."""
    jobs = [job for job in map(desired_job, sources) if job is not None]
    return sorted(jobs, key=lambda j: j.name)


@dataclass
class JobEntry:
    """One job of the plan and, after ``sync_jobs``, what became of it (``error`` None: done)."""

    name: str
    action: Action
    source_id: str | None = None
    schedule: str | None = None
    config_hash: str | None = None
    error: str | None = None

    @property
    def writes(self) -> bool:
        return self.action in ("register", "update", "delete")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source_id": self.source_id,
            "action": self.action,
            "schedule": self.schedule,
            "config_hash": self.config_hash,
            "error": self.error,
        }


@dataclass
class JobsPlan:
    endpoint: str
    dry_run: bool
    entries: list[JobEntry] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[JobEntry]:
        return [e for e in self.entries if e.error is not None]

    def counts(self, *, done_only: bool = False) -> dict[str, int]:
        """Entries per action (``done_only``: those that did not fail), and how many failed."""
        out = dict.fromkeys((*ACTIONS, "failed"), 0)
        for entry in self.entries:
            if not (done_only and entry.error is not None):
                out[entry.action] += 1
        out["failed"] = len(self.failed)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "dry_run": self.dry_run,
            "counts": self.counts(),
            "jobs": [e.to_dict() for e in self.entries],
        }


def plan_jobs(
    desired: Sequence[DesiredJob], registry: Sequence[dict[str, Any]], *, prune: bool = True
) -> list[JobEntry]:
    """Compare the desired jobs with the registry by config hash. Pure; entries sorted by name."""
    known = {r["_id"]: r for r in registry}
    entries: list[JobEntry] = []
    for job in desired:
        registered = known.get(job.name)
        if registered is None:
            action: Action = "register"
        elif registered.get("config_hash") != job.config_hash:
            action = "update"
        else:
            action = "unchanged"
        entries.append(JobEntry(job.name, action, job.source_id, job.schedule, job.config_hash))
    wanted = {j.name for j in desired}
    for name, registered in known.items():
        if name not in wanted:
            entries.append(JobEntry(name, "delete" if prune else "keep", registered.get("source_id")))
    entries.sort(key=lambda e: e.name)
    return entries


async def _apply(dapr: DaprClient, store: JobRegistry, entry: JobEntry) -> None:
    """Send one entry's write to the sidecar, then record it in the registry."""
    if entry.action in ("register", "update"):
        assert entry.source_id is not None and entry.schedule is not None and entry.config_hash is not None
        data = {"source_id": entry.source_id, "config_hash": entry.config_hash}
        try:
            await dapr.schedule_job(entry.name, schedule=entry.schedule, data=data)
        except DaprError as exc:
            if exc.status is not None and entry.schedule.startswith("CRON_TZ="):
                raise DaprError(exc.message + _TIMEZONE_HINT, exc.status, exc.error_code) from None
            raise
        await store.put_job(entry.name, entry.source_id, entry.config_hash)
    elif entry.action == "delete":
        await dapr.delete_job(entry.name)
        await store.delete_job(entry.name)


async def _apply_all(dapr: DaprClient, store: JobRegistry, entries: Sequence[JobEntry]) -> None:
    """Apply each entry; one job's error is recorded on it and the rest go on.

    A sidecar that cannot be reached (no HTTP answer at all) fails every job the same way: re-raised at once.
    """
    for entry in entries:
        if not entry.writes:
            continue
        try:
            await _apply(dapr, store, entry)
        except DaprError as exc:
            if exc.status is None:
                raise
            entry.error = exc.message
        except PullctlError as exc:  # the registry write (StoreError)
            entry.error = exc.message


async def sync_jobs(
    dapr: DaprClient,
    store: JobRegistry,
    sources: Sequence[LoadedSource],
    *,
    dry_run: bool = False,
    prune: bool = True,
) -> JobsPlan:
    """Register a DAPR Job per enabled ``scheduled_pull`` source, re-register changed ones, delete orphans.

    ``sources`` must be every source (an absent one's job is pruned), loaded with ``target="dapr"``.
    """
    started = time.monotonic()
    registry = await store.list_jobs()
    plan = JobsPlan(dapr.endpoint, dry_run, plan_jobs(desired_jobs(sources), registry, prune=prune))
    if not dry_run:
        await _apply_all(dapr, store, plan.entries)
    plan.seconds = time.monotonic() - started
    return plan


async def delete_source_job(dapr: DaprClient, store: JobRegistry, source_id: str) -> bool:
    """Delete the job of ``source_id`` from the sidecar and the registry; whether the registry knew it."""
    name = job_name(source_id)
    known = any(r["_id"] == name for r in await store.list_jobs())
    await dapr.delete_job(name)
    await store.delete_job(name)
    return known


@dataclass
class ListedJob:
    """A registry entry joined with what the sidecar holds (``job`` None: the sidecar does not have it)."""

    name: str
    source_id: str
    config_hash: str
    registered_at: datetime | str
    job: dict[str, Any] | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        if self.error is not None:
            return "error"
        return "missing" if self.job is None else "active"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source_id": self.source_id,
            "config_hash": self.config_hash,
            "registered_at": (
                self.registered_at.isoformat()
                if isinstance(self.registered_at, datetime)
                else self.registered_at
            ),
            "status": self.status,
            "schedule": (self.job or {}).get("schedule"),
            "data": (self.job or {}).get("data"),
            "error": self.error,
        }


async def list_jobs(dapr: DaprClient, store: JobRegistry) -> list[ListedJob]:
    """Every job in the registry with a GET of it from the sidecar (no list endpoint exists)."""
    listed: list[ListedJob] = []
    for reg in await store.list_jobs():
        entry = ListedJob(reg["_id"], reg["source_id"], reg["config_hash"], reg["registered_at"])
        try:
            entry.job = await dapr.get_job(entry.name)
        except DaprError as exc:
            if exc.status is None:
                raise
            entry.error = exc.message
        listed.append(entry)
    return listed


def _follow_warning(settings: Settings, problems: Sequence[str]) -> str:
    return (
        f"the DAPR Jobs did not follow the config change ({'; '.join(problems)});"
        f" run 'pullctl jobs sync' where the DAPR sidecar of 'pullctl serve' answers"
        f" (DAPR_HTTP_ENDPOINT={settings.dapr_endpoint})"
    )


async def follow_config_change(
    settings: Settings,
    store: JobRegistry,
    changed_sources: Sequence[LoadedSource],
    deleted_source_ids: Sequence[str],
    *,
    dapr: DaprClient | None = None,
) -> str | None:
    """Re-register the jobs of ``changed_sources`` and delete those of ``deleted_source_ids`` (DESIGN §3).

    A changed source that no longer has a job (disabled, or no longer ``scheduled_pull``) loses it. Returns
    None when the sidecar took every change, else a warning saying ``pullctl jobs sync`` must run (the
    sidecar is not reachable, refused a job, or the registry failed); never raises a ``PullctlError``.
    """
    try:
        registry = {r["_id"]: r for r in await store.list_jobs()}
    except PullctlError as exc:  # the configs are saved already: say what to do, do not fail
        return _follow_warning(settings, [f"the jobs registry could not be read: {exc.message}"])
    entries: list[JobEntry] = []
    for src in changed_sources:
        job = desired_job(src)
        name = job_name(src.source_id)
        if job is None:
            entries.append(JobEntry(name, "delete", src.source_id))
        elif registry.get(name, {}).get("config_hash") != job.config_hash:
            action: Action = "update" if name in registry else "register"
            entries.append(JobEntry(name, action, job.source_id, job.schedule, job.config_hash))
    entries.extend(JobEntry(job_name(s), "delete", s) for s in deleted_source_ids)
    if not entries:
        return None
    client = dapr or DaprClient.from_settings(settings, timeout=5.0)
    try:
        await _apply_all(client, store, entries)
    except DaprError as exc:
        return _follow_warning(settings, [exc.message])
    finally:
        if dapr is None:
            await client.aclose()
    problems = [f"{e.name}: {e.error}" for e in entries if e.error is not None]
    return _follow_warning(settings, problems) if problems else None


def startup_policy(attempts: int, first: float, cap: float) -> RetryPolicy:
    """Start-up sync attempts: pauses doubling from ``first`` up to ``cap``, no jitter; any DAPR error is
    retried (a starting sidecar answers 500s and 404s for a while)."""
    return RetryPolicy(
        max_attempts=attempts,
        initial_delay_seconds=first,
        max_delay_seconds=cap,
        retry_on_status=range(400, 600),
        jitter=False,
    )


async def sync_until_ready(
    dapr: DaprClient,
    store: JobRegistry,
    sources: Sequence[LoadedSource],
    *,
    policy: RetryPolicy,
    on_retry: Callable[[int, float, str], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> JobsPlan:
    """``sync_jobs``, under the retry loop while the sidecar is not there or a job failed.

    Returns the last plan (check ``failed``); re-raises the last ``DaprError`` if the sidecar never answered.
    """
    last: JobsPlan | DaprError | None = None

    async def attempt() -> JobsPlan:
        nonlocal last
        try:
            last = await sync_jobs(dapr, store, sources)
        except DaprError as exc:
            last = exc
            raise AttemptFailed(Outcome(exc.message, status=exc.status)) from None
        if last.failed:
            raise AttemptFailed(Outcome("; ".join(f"{e.name}: {e.error}" for e in last.failed)))
        return last

    def retried(attempt_number: int, delay: float, outcome: Outcome) -> None:
        if on_retry is not None:
            on_retry(attempt_number, delay, outcome.reason)

    try:
        return await call_with_retries(attempt, policy, sleep=sleep, on_retry=retried)
    except GaveUp:
        if isinstance(last, DaprError):
            raise last from None
        assert last is not None
        return last

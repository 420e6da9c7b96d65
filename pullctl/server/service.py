"""`pullctl serve`'s service: triggers, in-flight runs, the start-up jobs sync, health (``app.py`` routes
HTTP to it)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from pullctl.config.loader import LoadResult
from pullctl.config.source import ConfigSource
from pullctl.dapr import DaprClient
from pullctl.errors import PullctlError, UsageError
from pullctl.logs import JsonLines
from pullctl.pipeline.config_store import open_config_source
from pullctl.pipeline.documents import RunRecord, new_run_id, utcnow
from pullctl.pipeline.store import Store, store_at
from pullctl.redact import mask_url
from pullctl.schedulers.dapr_jobs import JobsPlan, startup_policy, sync_until_ready
from pullctl.settings import Settings

INTERRUPTED = "interrupted: pullctl serve shut down before the run finished"


@dataclass
class _Outcome:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


MAX_CALLBACK_BYTES = 64 * 1024  # a job callback's body is {"source_id", "config_hash"}: far less
BUSY_RETRY_AFTER_SECONDS = 30
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def check_exposure(host: str, app_token: str | None, allow_unauthenticated: bool) -> str | None:
    """``serve`` on an address others can reach needs ``APP_API_TOKEN`` (the token DAPR sends as
    ``dapr-api-token``): else anyone who reaches the port can trigger every source's pull, as often as they
    like. Raises ``UsageError``; with the explicit opt-out, returns the warning to log instead."""
    if app_token or host in LOOPBACK_HOSTS or host.startswith("127."):
        return None
    message = (
        f"serve on {host} without APP_API_TOKEN lets anyone who reaches the port trigger any pull; set"
        " APP_API_TOKEN (the DAPR app API token, dapr.io/app-token-secret) or pass --allow-unauthenticated"
    )
    if not allow_unauthenticated:
        raise UsageError(message)
    return f"--allow-unauthenticated: {message.split(';')[0]}"


@dataclass
class _InFlight:
    source_id: str
    run_id: str
    task: asyncio.Task[_Outcome]


class PullService:
    """The state behind the app: the store, the DAPR client, runs in flight, the start-up sync."""

    def __init__(
        self,
        settings: Settings,
        *,
        sync_on_start: bool = True,
        startup_attempts: int = 8,
        startup_first_delay: float = 1.0,
        startup_max_delay: float = 15.0,
        shutdown_grace: float = 5.0,
        log: JsonLines | None = None,
        configs: ConfigSource | None = None,
        max_concurrent_runs: int = 4,
    ) -> None:
        self.settings = settings
        self.max_concurrent_runs = max_concurrent_runs
        self.configs = configs or open_config_source(settings.config, settings.mongodb_database)
        self.sync_on_start = sync_on_start
        self.startup_policy = startup_policy(startup_attempts, startup_first_delay, startup_max_delay)
        self.shutdown_grace = shutdown_grace
        self.log = log or JsonLines()
        self.app_token = settings.app_api_token
        self.store: Store | None = None
        self.dapr: DaprClient | None = None
        self.in_flight: dict[str, _InFlight] = {}
        self.jobs_state = "syncing" if sync_on_start else "off"
        self.jobs_detail: dict[str, Any] = {}
        self._sync_task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        store = store_at(self.settings.store, self.settings.mongodb_database)
        try:
            await store.open()
        except PullctlError as exc:
            self.log("error", "store_unreachable", message=exc.message)
            raise
        self.store = store
        self.dapr = DaprClient.from_settings(self.settings)
        self.log(
            "info", "serve_started", config=mask_url(self.settings.config), dapr=self.settings.dapr_endpoint
        )
        if self.sync_on_start:
            self._sync_task = asyncio.create_task(self._startup_sync(), name="pullctl-startup-jobs-sync")

    async def stop(self) -> None:
        if self._sync_task is not None and not self._sync_task.done():
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        await self._drain()
        if self.dapr is not None:
            await self.dapr.aclose()
        if self.store is not None:
            await self.store.close()
        self.log("info", "serve_stopped")

    async def _drain(self) -> None:
        """Give in-flight runs ``shutdown_grace`` seconds; cancel the rest and mark their records failed."""
        flights = list(self.in_flight.values())
        if not flights:
            return
        self.log("info", "waiting_for_runs", runs=[f.run_id for f in flights], seconds=self.shutdown_grace)
        _, pending = await asyncio.wait([f.task for f in flights], timeout=self.shutdown_grace)
        for flight in flights:
            if flight.task not in pending:
                continue
            flight.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await flight.task
            await self._record_interrupted(flight)

    async def _record_interrupted(self, flight: _InFlight) -> None:
        assert self.store is not None
        try:
            record = await self.store.get_run(flight.run_id)
            if record is not None:
                record.status, record.message = "failed", INTERRUPTED
                record.finished_at = record.finished_at or utcnow()
                record.add_error(None, INTERRUPTED)
                await self.store.save_run(record)
        except PullctlError as exc:
            self.log(
                "error",
                "run_not_recorded",
                source_id=flight.source_id,
                run_id=flight.run_id,
                message=exc.message,
            )
            return
        self.log(
            "error", "run_interrupted", source_id=flight.source_id, run_id=flight.run_id, message=INTERRUPTED
        )

    # -- start-up jobs sync ------------------------------------------------------------------------------

    async def _startup_sync(self) -> None:
        assert self.dapr is not None and self.store is not None
        try:
            loaded = await self._load()
            loaded.raise_for_errors()
        except PullctlError as exc:
            self._sync_failed(f"the configs could not be loaded: {exc.message}")
            return

        def retry(attempt: int, delay: float, reason: str) -> None:
            self.log("warning", "jobs_sync_retry", attempt=attempt, retry_in_seconds=delay, reason=reason)

        try:
            plan = await sync_until_ready(
                self.dapr, self.store, loaded.sources, policy=self.startup_policy, on_retry=retry
            )
        except PullctlError as exc:  # the sidecar never answered, or the registry (store) failed
            self._sync_failed(exc.message)
            return
        self._sync_done(plan)

    def _sync_failed(self, message: str) -> None:
        self.jobs_state = "failed"
        self.jobs_detail = {"error": message}
        self.log(
            "error", "jobs_sync_failed", message=message, fix="run 'pullctl jobs sync' once DAPR answers"
        )

    def _sync_done(self, plan: JobsPlan) -> None:
        for entry in plan.entries:
            level = "error" if entry.error else "info"
            self.log(level, "job_synced", job=entry.name, action=entry.action, error=entry.error)
        self.jobs_state = "partial" if plan.failed else "synced"
        self.jobs_detail = {"counts": plan.counts(), "failed": [e.to_dict() for e in plan.failed]}
        self.log("warning" if plan.failed else "info", "jobs_synced", counts=plan.counts())

    async def _load(self) -> LoadResult:
        """Every config, read in a thread: a slow config store must not stall the event loop."""
        return await asyncio.to_thread(self.configs.all, "dapr")

    # -- triggers ----------------------------------------------------------------------------------------

    def authorized(self, request: Request) -> bool:
        if self.app_token is None:
            return True
        given = request.headers.get("dapr-api-token", "")
        return hmac.compare_digest(given.encode(), self.app_token.encode())

    async def trigger(self, source_id: str, via: str) -> _Outcome:
        """Run ``source_id`` unless a run of it is in flight here (409)."""
        flight = self.in_flight.get(source_id)
        if flight is not None:
            message = (
                f"a run of '{source_id}' is already in progress ({flight.run_id}); this trigger is skipped"
            )
            self.log("warning", "trigger_conflict", source_id=source_id, run_id=flight.run_id, via=via)
            return _Outcome(409, {"error": message, "source_id": source_id, "run_id": flight.run_id})
        if len(self.in_flight) >= self.max_concurrent_runs:
            message = (
                f"{len(self.in_flight)} runs are in progress (max_concurrent_runs"
                f"={self.max_concurrent_runs}); this trigger of '{source_id}' is refused: try again later"
            )
            self.log("warning", "trigger_refused", source_id=source_id, via=via, reason="too many runs")
            retry = {"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)}
            return _Outcome(429, {"error": message, "source_id": source_id}, retry)
        run_id = new_run_id()
        task = asyncio.create_task(self._run(source_id, run_id, via), name=f"pull-{source_id}")
        self.in_flight[source_id] = _InFlight(source_id, run_id, task)
        task.add_done_callback(lambda _t: self.in_flight.pop(source_id, None))
        # shielded: a caller that goes away (or uvicorn's shutdown) does not cancel the run itself
        return await asyncio.shield(task)

    async def _run(self, source_id: str, run_id: str, via: str) -> _Outcome:
        from pullctl.run.report import JsonLogObserver
        from pullctl.run.runner import RunOptions
        from pullctl.run.service import run_pulls

        self.log("info", "trigger_received", source_id=source_id, run_id=run_id, via=via)
        try:
            loaded = await self._load()
        except PullctlError as exc:
            return self._failed(source_id, f"the configs could not be loaded: {exc.message}")
        source = next((s for s in loaded.sources if s.source_id == source_id), None)
        if source is None:
            if loaded.errors:  # it may be one of the invalid ones: not a 404, which DAPR would drop
                message = (
                    f"no valid source '{source_id}'; {len(loaded.errors)} config error(s), the first:"
                    f" {loaded.errors[0]}"
                )
                return self._failed(source_id, message)
            message = f"no source '{source_id}' in the configs at {mask_url(self.settings.config)}"
            self.log(
                "error",
                "unknown_source",
                source_id=source_id,
                message=message,
                note="DAPR counts a 404 as delivered and drops the trigger: delete the job with"
                f" 'pullctl jobs delete {source_id}' if the source is gone",
            )
            return _Outcome(404, {"error": message, "source_id": source_id})
        if not (source.config.enabled and source.config.is_scheduled_pull):
            reason = "disabled" if not source.config.enabled else f"mode {source.config.ingestion.mode}"
            self.log("warning", "trigger_skipped", source_id=source_id, reason=reason)
            return _Outcome(200, {"source_id": source_id, "status": "skipped", "reason": reason})
        try:
            [record, *_] = await run_pulls(
                self.settings,
                source_id,
                RunOptions(trigger="dapr", run_id=run_id),
                observer_for=lambda _window: JsonLogObserver(stream=self.log.stream),
                store=self.store,
                dapr=self.dapr,  # one sidecar client for every trigger's secrets and events
                loaded=loaded.one(source_id),  # the configs read above; errors in its own file refuse it
            )
        except PullctlError as exc:
            return self._failed(source_id, exc.message)
        return self._finished(record)

    def _failed(self, source_id: str, message: str) -> _Outcome:
        self.log("error", "trigger_failed", source_id=source_id, message=message)
        return _Outcome(500, {"error": message, "source_id": source_id})

    def _finished(self, record: RunRecord) -> _Outcome:
        status = 500 if record.status == "failed" else 200
        level = {"succeeded": "info", "partial": "warning"}.get(record.status, "error")
        self.log(
            level,
            "trigger_done",
            source_id=record.source_id,
            run_id=record.run_id,
            status=record.status,
            http_status=status,
        )
        return _Outcome(status, record.to_dict())

    # -- health ------------------------------------------------------------------------------------------

    async def healthy(self) -> tuple[bool, str | None]:
        if self.store is None:
            return False, "the store is not open"
        try:
            await asyncio.wait_for(self.store.ping(), timeout=5)
        except (PullctlError, TimeoutError) as exc:
            return False, getattr(exc, "message", None) or "the store did not answer within 5 s"
        return True, None

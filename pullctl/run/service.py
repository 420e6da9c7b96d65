"""`pullctl run` as a library call: config, store, event sink, windows (backfill), shards, replay.

The CLI and ``serve`` both call ``run_pulls``; neither builds a run by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from pullctl.config.loader import LoadedSource
from pullctl.errors import PullctlError, UsageError
from pullctl.pipeline.config_store import open_config_source
from pullctl.pipeline.documents import RunRecord
from pullctl.pipeline.events import open_sink
from pullctl.pipeline.metrics import export_run_metrics
from pullctl.pipeline.store import PullStore, open_store
from pullctl.run.plan import Shard, Window, backfill_windows, parse_instant, parse_step
from pullctl.run.runner import EXIT_CODES, RunObserver, RunOptions, run_source
from pullctl.settings import Settings

logger = logging.getLogger("pullctl")


@dataclass
class Backfill:
    start: str
    end: str
    step: str | None = None

    def windows(self) -> list[Window]:
        start, end = parse_instant(self.start, "--from"), parse_instant(self.end, "--to")
        if self.step is None:
            return [Window(start, end)] if end > start else backfill_windows(start, end, end - start)
        return backfill_windows(start, end, parse_step(self.step))


def load_source(settings: Settings, source_id: str) -> LoadedSource:
    """The one source ``source_id`` from where the settings point; other sources' errors do not block it."""
    configs = open_config_source(settings.config, settings.mongodb_database)
    return configs.one(source_id, target="dapr")  # raises with a did-you-mean when unknown


def _runnable(source: LoadedSource) -> LoadedSource:
    if not source.config.is_scheduled_pull:
        raise UsageError(
            f"source '{source.source_id}' has mode {source.config.ingestion.mode}; only scheduled_pull runs"
        )
    return source


def shard_from_env(loaded: LoadedSource, settings: Settings) -> Shard | None:
    """An Indexed Job pod's share: ``JOB_COMPLETION_INDEX`` of ``iteration.shards``."""
    iteration = loaded.config.ingestion.iteration
    index = settings.job_completion_index
    if iteration is None or iteration.shards <= 1 or index is None:
        return None
    if not index.isdigit() or int(index) >= iteration.shards:
        raise UsageError(f"JOB_COMPLETION_INDEX={index} is not in 0..{iteration.shards - 1}")
    return Shard(int(index), iteration.shards)


async def run_pulls(
    settings: Settings,
    source_id: str,
    options: RunOptions,
    *,
    backfill: Backfill | None = None,
    replay: str | None = None,
    observer_for: Callable[[Window | None], RunObserver] | None = None,
    store: PullStore | None = None,
    now: datetime | None = None,
    loaded: LoadedSource | None = None,
) -> list[RunRecord]:
    """Run ``source_id`` once, or once per backfill window, or replay a run's failed items.

    ``loaded`` is the source when the caller has loaded it already (``serve``, once per trigger); else it is
    loaded here, in a thread (a slow config store must not stall the event loop)."""
    if loaded is None:
        loaded = await asyncio.to_thread(load_source, settings, source_id)
    loaded = _runnable(loaded)
    if options.shard is None:
        options = replace(options, shard=shard_from_env(loaded, settings))
    async with contextlib.AsyncExitStack() as stack:
        if store is None and not options.dry_run:
            store = await stack.enter_async_context(open_store(settings))
        sink = open_sink(loaded.config, settings) if not options.dry_run else None
        if sink is not None:
            stack.push_async_callback(sink.aclose)
        windows: list[Window | None] = [options.window]
        if replay is not None:
            assert store is not None or options.dry_run
            windows, options = await _replay(store, replay, source_id, options)
            if not windows:
                return []
        elif backfill is not None:
            windows = list(backfill.windows())
            options = replace(options, trigger="backfill")
        records: list[RunRecord] = []
        for window in windows:
            observer = observer_for(window) if observer_for else None
            record = await run_source(
                loaded,
                settings,
                store,
                options=replace(options, window=window),
                sink=sink,
                observer=observer,
                now=now,
            )
            records.append(record)
            warning = await asyncio.to_thread(export_run_metrics, record, settings.otel_endpoint)
            if warning:
                logger.warning(warning, extra={"event": "metrics_not_sent"})
        return records


async def _replay(
    store: PullStore | None, run_id: str, source_id: str, options: RunOptions
) -> tuple[list[Window | None], RunOptions]:
    if store is None:
        raise UsageError("--replay reads the run from the store; it cannot be combined with --dry-run")
    previous = await store.get_run(run_id)
    if previous is None:
        raise UsageError(f"no run '{run_id}' in the store (see: pullctl runs {source_id})")
    if previous.source_id != source_id:
        raise UsageError(f"run '{run_id}' belongs to source '{previous.source_id}', not '{source_id}'")
    if not previous.failed_items:
        return [], options
    window = Window.from_dict(previous.window)
    return [window], replace(options, trigger="manual", replay_items=list(previous.failed_items))


def exit_code(records: list[RunRecord]) -> int:
    codes = [EXIT_CODES.get(r.status, 1) for r in records]
    if 1 in codes:
        return 1
    return 3 if 3 in codes else 0


async def shutdown_sidecar(settings: Settings) -> str | None:
    """Shut the DAPR sidecar down when asked (``PULLCTL_DAPR_SHUTDOWN=1``); a warning, or None."""
    if not settings.dapr_shutdown:
        return None
    from pullctl.dapr import DaprClient

    with contextlib.suppress(PullctlError):
        async with DaprClient(settings.dapr_endpoint, settings.dapr_api_token) as dapr:
            await dapr.shutdown()
            return None
    return f"could not shut down the DAPR sidecar at {settings.dapr_endpoint}; the pod may not finish"

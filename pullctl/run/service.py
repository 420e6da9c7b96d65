"""`pullctl run` as a library call: config, store, event sink, windows (backfill), shards, replay.

The CLI and ``serve`` both call ``run_pulls``; neither builds a run by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pullctl.config.loader import LoadedSource
from pullctl.config.schedule import catch_up
from pullctl.config.templates import as_instant
from pullctl.errors import OptionsError, PullctlError, UsageError
from pullctl.pipeline.config_store import open_config_source
from pullctl.pipeline.documents import RunRecord, utcnow
from pullctl.pipeline.events import open_sink
from pullctl.pipeline.metrics import export_run_metrics
from pullctl.pipeline.store import PullStore, open_store
from pullctl.run import incremental
from pullctl.run.plan import Shard
from pullctl.run.runner import EXIT_CODES, RunObserver, RunOptions, run_source
from pullctl.run.windows import Window, backfill_windows, scheduled_window
from pullctl.settings import Settings

if TYPE_CHECKING:
    from pullctl.dapr import DaprClient

logger = logging.getLogger("pullctl")


@dataclass(frozen=True)
class Backfill:
    """Runs over [start, end): one window of ``step`` each (None: one window)."""

    start: datetime
    end: datetime
    step: timedelta | None = None

    def windows(self) -> list[Window]:
        return backfill_windows(self.start, self.end, self.step or (self.end - self.start))


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
    advance_state: bool = False,
    dapr: DaprClient | None = None,
) -> list[RunRecord]:
    """Run ``source_id`` once, or once per backfill window, or replay a run's failed items.

    With ``window.since: last_success`` a run (not a backfill, not a replay) covers from the end of the last
    succeeded window to the tick, one run record per ``step`` window, oldest first, and stops at the first
    window that does not succeed; each succeeded window moves the mark (after its run record is saved: a
    crash in between re-fetches that window). A backfill leaves every state alone unless ``advance_state``.

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
        sink = open_sink(loaded.config, settings, dapr) if not options.dry_run else None
        if sink is not None:
            stack.push_async_callback(sink.aclose)
        plan = await _plan_windows(loaded, store, options, backfill, replay, advance_state, now or utcnow())
        options = plan.options
        records: list[RunRecord] = []
        for window in plan.windows:
            observer = observer_for(window) if observer_for else None
            record = await run_source(
                loaded,
                settings,
                store,
                options=replace(options, window=window),
                sink=sink,
                observer=observer,
                now=now,
                dapr=dapr,
            )
            records.append(record)
            warning = await asyncio.to_thread(export_run_metrics, record, settings.otel_endpoint)
            if warning:
                logger.warning(warning, extra={"event": "metrics_not_sent"})
            if plan.moves_mark and window is not None and store is not None and not options.dry_run:
                if record.status != "succeeded":
                    if backfill is None:  # the gap stays the next run's: nothing after it is fetched now
                        break
                    continue
                await _move_window_mark(loaded, store, options, window, record.run_id, backfill is not None)
        return records


@dataclass
class _Windows:
    """What a run covers: its windows (None: the schedule's own), its options, whether it moves the mark."""

    windows: list[Window | None]
    options: RunOptions
    moves_mark: bool = False  # each succeeded window moves the since: last_success mark


async def _plan_windows(
    loaded: LoadedSource,
    store: PullStore | None,
    options: RunOptions,
    backfill: Backfill | None,
    replay: str | None,
    advance_state: bool,
    now: datetime,
) -> _Windows:
    """A replay's one window, a backfill's, a ``since: last_success`` catch-up's, or the run's own."""
    since = loaded.config.ingestion.window.since
    if replay is not None:
        replayed, options = await _replay(store, replay, loaded.source_id, options)
        return _Windows(replayed, options)
    if backfill is not None:
        options = replace(options, trigger="backfill", commit_state=advance_state)
        return _Windows(list(backfill.windows()), options, advance_state and since == "last_success")
    if options.window is None and since == "last_success":
        windows: list[Window | None] = list(await _catch_up(loaded, store, options, now))
        if not windows:
            logger.info(
                f"{loaded.source_id}: nothing to fetch yet, the last succeeded window reaches the tick",
                extra={"event": "up_to_date"},
            )
        return _Windows(windows, options, not (options.only or options.limit))
    return _Windows([options.window], options)


def _mark_item(options: RunOptions) -> str:
    return incremental.window_item(str(options.shard) if options.shard else None)


async def _catch_up(
    loaded: LoadedSource, store: PullStore | None, options: RunOptions, now: datetime
) -> list[Window]:
    """The ``since: last_success`` windows of a run at ``now``: from the mark to the tick (``catch_up``)."""
    config = loaded.config
    rule = config.ingestion.window
    ticks = scheduled_window(config, now)
    mark = await _window_mark(store, config.source_id, _mark_item(options))
    spans = rule.spans()
    found = catch_up(
        mark,
        rule.initial_instant or ticks.start,
        ticks.end if config.ingestion.schedule else now,
        step=spans["step"],
        lookback=spans["lookback"],
        lag=spans["lag"],
        max_span=spans["max_span"],
    )
    return [Window(start, end) for start, end in found]


async def _window_mark(store: PullStore | None, source_id: str, item: str) -> datetime | None:
    record = await store.get_state(source_id, item) if store is not None else None
    value: Any = as_instant(record.value) if record is not None else None
    return value if isinstance(value, datetime) else None


async def _move_window_mark(
    loaded: LoadedSource,
    store: PullStore,
    options: RunOptions,
    window: Window,
    run_id: str,
    backfill: bool,
) -> None:
    """A succeeded window moves the mark to its end. A backfill (``--advance-state``) moves it only when it
    starts at or before the mark (or the initial start): moving past a gap would skip the gap."""
    source_id, item = loaded.source_id, _mark_item(options)
    if backfill:
        mark = await _window_mark(store, source_id, item)
        reach = mark or loaded.config.ingestion.window.initial_instant
        if reach is not None and window.start > reach:
            logger.warning(
                f"{source_id}: the backfill left the window mark at {reach.isoformat()}: it starts later"
                f" ({window.start.isoformat()}), and moving the mark past the gap would skip it",
                extra={"event": "state_kept"},
            )
            return
    outcome = await incremental.advance(store, source_id, item, window.end.isoformat(), run_id, kind="window")
    incremental.log_kept(source_id, item, outcome)


async def _replay(
    store: PullStore | None, run_id: str, source_id: str, options: RunOptions
) -> tuple[list[Window | None], RunOptions]:
    if store is None:
        raise OptionsError([("replay", "reads the run from the store; it cannot be combined with a dry run")])
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
        async with DaprClient.from_settings(settings) as dapr:
            await dapr.shutdown()
            return None
    return f"could not shut down the DAPR sidecar at {settings.dapr_endpoint}; the pod may not finish"

"""One run of one source: plan -> bounded fan-out of fetches -> batched pipeline -> run record.

Memory stays flat: a fixed pool of ``concurrency`` workers pulls tasks from the plan, and pages go
through a bounded queue to one writer that stores them in batches; nothing holds all responses.
A failed item is recorded (key, reason, attempts) and the run goes on. A fatal error (store, MCP,
secret) ends the run as failed; whatever was stored before is kept and reported, never over-claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from pullctl.config.loader import LoadedSource
from pullctl.errors import FetchError, ItemSkippedError, IterationError, PullctlError, UsageError
from pullctl.pipeline.documents import (
    RunRecord,
    RunStatus,
    new_run_id,
    utcnow,
)
from pullctl.pipeline.events import EventSink, NoEvents
from pullctl.pipeline.store import PullStore
from pullctl.redact import Redactor
from pullctl.run import incremental
from pullctl.run.context import (
    RunObserver,
    RunOptions,
    RunState,
    SilentObserver,
    record_skipped,
    run_secret,
    run_tokens,
)
from pullctl.run.fetch import Fetcher
from pullctl.run.iteration import resolve_items
from pullctl.run.parents import child_tasks
from pullctl.run.plan import FetchTask, Plan, Planner, no_task_reason, stream_items
from pullctl.run.secrets import resolve_named_secrets
from pullctl.run.transport import env_proxy, make_transport, proxy_userinfo
from pullctl.run.windows import Window, scheduled_window
from pullctl.run.writer import documents, publish_pending, store_documents
from pullctl.settings import Settings

if TYPE_CHECKING:
    from pullctl.dapr import DaprClient

logger = logging.getLogger("pullctl")


def finish_status(record: RunRecord, fatal: bool) -> RunStatus:
    c = record.counts
    if fatal or (c["failed"] and not c["fetched"]):
        return "failed"
    if c["failed"] or record.events["pending"]:
        return "partial"
    return "succeeded"


EXIT_CODES = {"succeeded": 0, "partial": 3, "failed": 1, "running": 1}


async def run_source(
    loaded: LoadedSource,
    settings: Settings,
    store: PullStore | None,
    *,
    options: RunOptions | None = None,
    sink: EventSink | None = None,
    observer: RunObserver | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    now: datetime | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    dapr: DaprClient | None = None,
) -> RunRecord:
    """Run ``loaded`` once and return its record. ``store`` None (or ``dry_run``) stores nothing. ``dapr``:
    the sidecar client for secrets (``serve`` passes its one), else each lookup opens its own."""
    options = options or RunOptions()
    config = loaded.config
    now = now or utcnow()
    window = options.window or scheduled_window(config, now)
    record = RunRecord(
        run_id=options.run_id or new_run_id(now),
        source_id=config.source_id,
        trigger=options.trigger,
        window=window.as_dict(),
        shard=str(options.shard) if options.shard else None,
    )
    store = None if options.dry_run else store
    observer = observer or SilentObserver()
    state = RunState(
        loaded, record, store, sink or NoEvents(), observer, Redactor(), dry_run=options.dry_run, dapr=dapr
    )
    return await _run(state, settings, options, window, transport, now, sleep)


async def _run(
    state: RunState,
    settings: Settings,
    options: RunOptions,
    window: Window,
    transport: httpx.AsyncBaseTransport | None,
    now: datetime,
    sleep: Callable[[float], Awaitable[None]],
) -> RunRecord:
    """The run of ``state.record``: opened in the store, executed, its record saved however it ends."""
    config, record, store = state.loaded.config, state.record, state.store
    fatal = False
    usage: UsageError | None = None
    try:
        if store is not None:
            deadline = timedelta(seconds=config.ingestion.deadline_seconds)
            await store.close_stale_runs(
                config.source_id, now - deadline, "the run did not finish within deadline_seconds (killed?)"
            )
            await store.save_run(record)
            await publish_pending(state)
        await _execute(state, settings, options, window, transport, sleep)
    except PullctlError as exc:
        fatal = True
        record.message = state.redact(exc.message)
        record.add_error(None, record.message)
        usage = exc if isinstance(exc, UsageError) else None
    except (asyncio.CancelledError, KeyboardInterrupt):
        fatal = True
        record.message = "interrupted before the run finished"
        record.add_error(None, record.message)
        raise
    finally:
        record.finished_at = utcnow()
        record.status = finish_status(record, fatal)
        if store is not None:
            with contextlib.suppress(PullctlError):  # the store may be what failed: return the record anyway
                await store.save_run(record)
        state.observer.finished(record)
    if usage is not None:  # recorded as failed, and the caller's to fix: exit 2
        raise usage
    return record


async def _execute(
    state: RunState,
    settings: Settings,
    options: RunOptions,
    window: Window,
    transport: httpx.AsyncBaseTransport | None,
    sleep: Callable[[float], Awaitable[None]],
) -> None:
    config = state.loaded.config
    ing = config.ingestion
    assert ing.request is not None
    record = state.record
    secret = await run_secret(state, ing.request, settings)
    named = await resolve_named_secrets(ing, settings, state.redact, state.dapr)
    concurrency = options.concurrency or (ing.iteration.concurrency if ing.iteration else 1)
    planner = await _planner(state, options, window, named)
    tasks: Iterable[FetchTask] | AsyncIterator[FetchTask]
    if ing.parent is None:
        items = await resolve_items(ing.iteration, settings)
        plan = stream_items(planner, items)  # the tasks are rendered as the workers take them
        record.counts["items"] = plan.items
        record_skipped(record, plan.skipped)
        state.observer.started(record, plan)
        if not plan.tasks:  # not a success: say why (an `only` that matches nothing is a usage error)
            raise no_task_reason(planner, items, plan)
        concurrency = min(concurrency, len(plan.tasks))
        tasks = plan.tasks
    else:
        state.observer.started(record, Plan(config.source_id, record.run_id, window, streaming=True))
    own_transport = transport is None
    http = transport or _own_transport(state, settings, ing.request.base_url, concurrency)
    try:
        tokens = await run_tokens(state, config, named, settings, None if own_transport else http, sleep)
        fetcher = Fetcher(
            config,
            http,
            secret,
            state.redact,
            record.counts,
            sleep=sleep,
            concurrency=concurrency,
            create_jobs=not options.dry_run or options.allow_jobs,
            tokens=tokens,
        )
        if ing.parent is not None:
            tasks = child_tasks(state, settings, planner, window, http, sleep, fetcher.create_jobs)
        await _fan_out(state, fetcher, tasks, concurrency, window)
        if ing.parent is not None and not planner.planned and not record.counts["failed"]:
            raise IterationError(f"nothing to fetch: {ing.parent} gave no records to iterate over")
        await incremental.commit_states(state, options)  # every document stored, the run record next
    finally:
        for manager in state.tokens:
            await manager.aclose()
        if own_transport:
            await http.aclose()


async def _planner(state: RunState, options: RunOptions, window: Window, secrets: dict[str, str]) -> Planner:
    """The run's planner, with the incremental states the run starts from (read once, here)."""
    config = state.loaded.config
    ing = config.ingestion
    if ing.incremental is not None and state.store is not None:
        found = await state.store.list_states(config.source_id)
        state.states = {r.item: r for r in found if not (r.item or "").startswith(incremental.WINDOW_ITEM)}
    return Planner(
        config,
        window,
        state.record.run_id,
        shard=options.shard,
        only=options.only,
        overrides=options.overrides,
        limit=options.limit,
        replay=options.replay_items,
        secrets=secrets,
        states={item: r.value for item, r in state.states.items()} if ing.incremental else None,
    )


def _own_transport(
    state: RunState, settings: Settings, base_url: str, concurrency: int
) -> httpx.AsyncBaseTransport:
    """The run's own pool, through the proxy the environment names for ``base_url`` (its credentials
    masked)."""
    proxy = env_proxy(base_url, settings.proxies)
    userinfo = proxy_userinfo(proxy) if proxy is not None else None
    if userinfo:
        state.redact.add_userinfo(userinfo)
    return make_transport(concurrency, proxy)


async def _fan_out(
    state: RunState,
    fetcher: Fetcher,
    tasks: Iterable[FetchTask] | AsyncIterator[FetchTask],
    concurrency: int,
    window: Window,
) -> None:
    """``concurrency`` workers over ``tasks`` and the one writer; a store failure or a failed parent ends it.
    A list is shared as one iterator; a parent's records stream in through a bounded queue while the
    workers fetch (memory flat in the parent's size)."""
    helpers: list[asyncio.Task[None]] = []
    if isinstance(tasks, AsyncIterator):
        todo: asyncio.Queue[FetchTask | None] = asyncio.Queue(maxsize=concurrency * 2)
        helpers.append(asyncio.create_task(_produce(todo, tasks, concurrency)))
        take: Callable[[], Awaitable[FetchTask | None]] = todo.get
    else:
        listed = iter(tasks)

        async def take() -> FetchTask | None:
            return next(listed, None)

    writer = asyncio.create_task(store_documents(state))
    workers = [asyncio.create_task(_worker(state, fetcher, take, window)) for _ in range(concurrency)]
    fetching = asyncio.gather(*helpers, *workers)
    try:
        await asyncio.wait([writer, fetching], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
        if writer.done():  # the writer only ends early on a store failure
            writer.result()
        fetching.result()
    finally:
        fetching.cancel()
        await asyncio.gather(fetching, return_exceptions=True)
        for t in (*helpers, *workers):
            t.cancel()
        await asyncio.gather(*helpers, *workers, return_exceptions=True)
        if not writer.done():
            await state.queue.put(None)
        await writer  # re-raises a store failure


async def _produce(
    todo: asyncio.Queue[FetchTask | None], tasks: AsyncIterator[FetchTask], workers: int
) -> None:
    async for task in tasks:
        await todo.put(task)
    for _ in range(workers):
        await todo.put(None)


async def _worker(
    state: RunState, fetcher: Fetcher, take: Callable[[], Awaitable[FetchTask | None]], window: Window
) -> None:
    record = state.record
    iterating = state.loaded.config.ingestion.iteration is not None
    while (task := await take()) is not None:
        try:
            mark = await _fetch_item(state, fetcher, task, window)
        except ItemSkippedError as exc:  # a response_actions rule: counted with its reason, not a failure
            record_skipped(record, [(task.key, state.redact(exc.message))])
            state.observer.item_done(record, task.key, None)
            continue
        except FetchError as exc:
            message = state.redact(exc.message)
            record.counts["failed"] += 1
            record.failed_items.extend(task.item_keys)
            record.add_error(task.key, message, exc.attempts)
            state.observer.item_done(record, task.key, message, exc.attempts)
            continue
        if mark is not None:
            state.marks[task.key if iterating else None] = mark
        record.counts["fetched"] += 1
        state.observer.item_done(record, task.key, None)


async def _pages(
    state: RunState, fetcher: Fetcher, task: FetchTask, window: Window, mark: incremental.Mark | None
) -> None:
    record = state.record
    async for page in fetcher.pages(task, mark.observe if mark is not None else None):
        record.counts["pages"] += not page.part  # a streamed page comes in parts
        for doc in documents(state, task, page, window):
            await state.queue.put(doc)


async def _fetch_item(state: RunState, fetcher: Fetcher, task: FetchTask, window: Window) -> Any:
    """Fetch one item's pages into the queue; its incremental mark (None: none to keep). When the API says
    the state sent has expired (``incremental.expired_status``), the item starts over from
    ``initial_value``, with a warning."""
    config = state.loaded.config.ingestion.incremental
    mark = incremental.Mark(config) if config is not None else None
    try:
        await _pages(state, fetcher, task, window, mark)
    except FetchError as exc:
        if mark is None or task.restart is None or exc.status not in mark.expired_status:
            raise
        expired = exc.status
    else:
        if mark is None:
            return None
        if task.restart is None or mark.expired is None:
            return mark.finish()
        expired = mark.expired
    assert config is not None and task.restart is not None
    initial = "absent: left out" if config.initial_value is None else repr(config.initial_value)
    message = state.redact(
        f"the API expired the stored state (HTTP {expired}): the item starts over from initial_value"
        f" ({initial}); see the API's documentation on a full sync"
    )
    logger.warning(f"{state.record.source_id} {task.key}: {message}", extra={"event": "state_expired"})
    state.record.add_error(task.key, f"warning: {message}")
    mark = incremental.Mark(config)
    await _pages(state, fetcher, task.restart, window, mark)
    return mark.finish()

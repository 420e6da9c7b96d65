"""One run of one source: plan -> bounded fan-out of fetches -> batched pipeline -> run record.

Memory stays flat: a fixed pool of ``concurrency`` workers pulls tasks from the plan, and pages go
through a bounded queue to one writer that stores them in batches; nothing holds all responses.
A failed item is recorded (key, reason, attempts) and the run goes on. A fatal error (store, MCP,
secret) ends the run as failed; whatever was stored before is kept and reported, never over-claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from pullctl.config.loader import LoadedSource
from pullctl.config.models import Request, SourceConfig
from pullctl.config.paths import describe
from pullctl.errors import FetchError, ItemSkippedError, IterationError, PullctlError, UsageError
from pullctl.pipeline.documents import (
    Document,
    RunRecord,
    content_hash,
    document_id,
    new_run_id,
    utcnow,
)
from pullctl.pipeline.events import EventSink, NoEvents
from pullctl.pipeline.state import StateRecord
from pullctl.pipeline.store import PullStore
from pullctl.redact import Redactor
from pullctl.run import incremental
from pullctl.run.auth import TokenManager, open_tokens
from pullctl.run.fetch import Fetcher, Page, json_bytes
from pullctl.run.iteration import resolve_items
from pullctl.run.plan import (
    FetchTask,
    Plan,
    Planner,
    Shard,
    Window,
    no_task_reason,
    scheduled_window,
    stream_items,
)
from pullctl.run.secrets import resolve_named_secrets, resolve_secret
from pullctl.run.transport import env_proxy, make_transport, proxy_userinfo
from pullctl.settings import Settings

if TYPE_CHECKING:
    from pullctl.dapr import DaprClient

logger = logging.getLogger("pullctl")
BATCH_SIZE = 200
COMMIT_CONCURRENCY = 16  # state swaps in flight at the end of a run (per-item states)
BATCH_LINGER_SECONDS = 0.05


@dataclass
class RunOptions:
    trigger: str = "manual"
    window: Window | None = None
    shard: Shard | None = None
    only: dict[str, list[str]] | None = None
    overrides: dict[str, str] | None = None
    limit: int | None = None
    concurrency: int | None = None
    dry_run: bool = False
    allow_jobs: bool = False  # a dry run creates report jobs too (job:); by default it creates none
    replay_items: list[str] | None = None  # run only these item keys (``run --replay``)
    run_id: str | None = None
    commit_state: bool = True  # advance the incremental state (a backfill: only with --advance-state)


class RunObserver(Protocol):
    """What a run reports while it goes: the CLI draws a progress bar or writes JSON log lines."""

    def started(self, record: RunRecord, plan: Plan) -> None: ...

    def item_done(self, record: RunRecord, key: str, error: str | None, attempts: int = 0) -> None: ...

    def stored(self, record: RunRecord) -> None: ...

    def dry_run_document(self, document: dict[str, Any]) -> None: ...

    def finished(self, record: RunRecord) -> None: ...


class SilentObserver:
    def started(self, record: RunRecord, plan: Plan) -> None: ...

    def item_done(self, record: RunRecord, key: str, error: str | None, attempts: int = 0) -> None: ...

    def stored(self, record: RunRecord) -> None: ...

    def dry_run_document(self, document: dict[str, Any]) -> None: ...

    def finished(self, record: RunRecord) -> None: ...


@dataclass
class _Run:
    """The mutable state of one run, shared by its workers and its writer."""

    loaded: LoadedSource
    record: RunRecord
    store: PullStore | None
    sink: EventSink
    observer: RunObserver
    redact: Redactor
    queue: asyncio.Queue[Document | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=BATCH_SIZE * 2)
    )
    dry_run: bool = False
    tokens: list[TokenManager] = field(default_factory=list)  # the run's and its parents', closed at its end
    dapr: DaprClient | None = None  # the sidecar client secrets are asked of (serve's), else their own
    states: dict[str | None, StateRecord] = field(default_factory=dict)  # incremental: as the run found them
    marks: dict[str | None, Any] = field(default_factory=dict)  # incremental: each succeeded item's mark


def finish_status(record: RunRecord, fatal: bool) -> str:
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
    observer = observer or SilentObserver()
    store = None if options.dry_run else store
    sink = sink or NoEvents()
    state = _Run(loaded, record, store, sink, observer, Redactor(), dry_run=options.dry_run, dapr=dapr)
    fatal = False
    usage: UsageError | None = None
    try:
        if store is not None:
            deadline = timedelta(seconds=config.ingestion.deadline_seconds)
            await store.close_stale_runs(
                config.source_id, now - deadline, "the run did not finish within deadline_seconds (killed?)"
            )
            await store.save_run(record)
            await _publish_pending(state)
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
            with contextlib.suppress(
                PullctlError
            ):  # the store may be what failed; the record is returned anyway
                await store.save_run(record)
        observer.finished(record)
    if usage is not None:  # recorded as failed, and the caller's to fix: exit 2
        raise usage
    return record


async def _execute(
    state: _Run,
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
    secret = await _secret(state, ing.request, settings)
    named = await resolve_named_secrets(ing, settings, state.redact, state.dapr)
    concurrency = options.concurrency or (ing.iteration.concurrency if ing.iteration else 1)
    if ing.incremental is not None and state.store is not None:
        found = await state.store.list_states(config.source_id)
        state.states = {r.item: r for r in found if not (r.item or "").startswith(incremental.WINDOW_ITEM)}
    planner = Planner(
        config,
        window,
        record.run_id,
        shard=options.shard,
        only=options.only,
        overrides=options.overrides,
        limit=options.limit,
        replay=options.replay_items,
        secrets=named,
        states={item: r.value for item, r in state.states.items()} if ing.incremental else None,
    )
    tasks: Iterable[FetchTask] | AsyncIterator[FetchTask]
    if ing.parent is None:
        items = await resolve_items(ing.iteration, settings)
        plan = stream_items(planner, items)  # the tasks are rendered as the workers take them
        record.counts["items"] = plan.items
        _skipped(record, plan.skipped)
        state.observer.started(record, plan)
        if not plan.tasks:  # not a success: say why (an --only that matches nothing is a usage error)
            reason, usage = no_task_reason(planner, items, plan)
            raise UsageError(reason) if usage else IterationError(reason)
        concurrency = min(concurrency, len(plan.tasks))
        tasks = plan.tasks
    else:
        state.observer.started(record, Plan(config.source_id, record.run_id, window, streaming=True))
    own_transport = transport is None
    if transport is None:
        proxy = env_proxy(ing.request.base_url, settings.proxies)
        userinfo = proxy_userinfo(proxy) if proxy is not None else None
        if userinfo:
            state.redact.add_userinfo(userinfo)
        transport = make_transport(concurrency, proxy)
    http = transport
    try:
        tokens = await _tokens(state, config, named, settings, None if own_transport else http, sleep)
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
            tasks = _child_tasks(state, settings, planner, window, http, sleep)
        await _fan_out(state, fetcher, tasks, concurrency, window)
        if ing.parent is not None and not planner.planned and not record.counts["failed"]:
            raise IterationError(f"nothing to fetch: {ing.parent} gave no records to iterate over")
        await _commit_states(state, options)  # after every document is stored, before the run record
    finally:
        for manager in state.tokens:
            await manager.aclose()
        if own_transport:
            await http.aclose()


async def _tokens(
    state: _Run,
    config: SourceConfig,
    named: dict[str, str],
    settings: Settings,
    transport: httpx.AsyncBaseTransport | None,
    sleep: Callable[[float], Awaitable[None]],
) -> TokenManager | None:
    """The token of ``config``'s oauth2/session auth for this run (None for static auth), closed at its end;
    ``transport`` None: it opens its own pool (the token URL's proxy)."""
    manager = await open_tokens(
        config,
        named,
        redact=state.redact,
        settings=settings,
        store=state.store,
        dry_run=state.dry_run,
        run_id=state.record.run_id,
        transport=transport,
        sleep=sleep,
    )
    if manager is not None:
        state.tokens.append(manager)
    return manager


async def _fan_out(
    state: _Run,
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

    writer = asyncio.create_task(_writer(state))
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
    state: _Run, fetcher: Fetcher, take: Callable[[], Awaitable[FetchTask | None]], window: Window
) -> None:
    record = state.record
    iterating = state.loaded.config.ingestion.iteration is not None
    while (task := await take()) is not None:
        try:
            mark = await _fetch_item(state, fetcher, task, window)
        except ItemSkippedError as exc:  # a response_actions rule: counted with its reason, not a failure
            _skipped(record, [(task.key, state.redact(exc.message))])
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
    state: _Run, fetcher: Fetcher, task: FetchTask, window: Window, mark: incremental.Mark | None
) -> None:
    record = state.record
    async for page in fetcher.pages(task, mark.observe if mark is not None else None):
        record.counts["pages"] += not page.part  # a streamed page comes in parts
        for doc in _documents(state, task, page, window):
            await state.queue.put(doc)


async def _fetch_item(state: _Run, fetcher: Fetcher, task: FetchTask, window: Window) -> Any:
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


async def _commit_states(state: _Run, options: RunOptions) -> None:
    """Advance the incremental state, once every document is stored (a crash before this re-fetches; the
    run record follows). Per item: each succeeded item's own mark. Per source: only when the run fetched
    every item (no failure, no --only/--limit/--replay)."""
    config = state.loaded.config
    inc = config.ingestion.incremental
    if inc is None or state.store is None or not options.commit_state or not state.marks:
        return
    record = state.record
    marks: dict[str | None, Any] = state.marks
    if not config.ingestion.per_item_state:
        partial = options.only or options.limit or options.replay_items
        if record.counts["failed"] or partial:
            why = f"{record.counts['failed']} item(s) failed" if record.counts["failed"] else "a partial run"
            logger.warning(
                f"{config.source_id}: state not advanced ({why}): the next run fetches from the same start",
                extra={"event": "state_kept"},
            )
            return
        marks = {
            None: incremental.merge(inc.kind, list(marks.values()))
            if inc.kind == "cursor"
            else marks.get(None)
        }
    store = state.store

    async def commit(item: str | None, value: Any) -> None:
        known = state.states.get(item)  # as the run read it: the first swap needs no read
        outcome = await incremental.advance(
            store,
            config.source_id,
            item,
            value,
            record.run_id,
            kind=inc.kind,
            started_from=known.version if known is not None else 0,
            read=known,
        )
        incremental.log_kept(config.source_id, item, outcome)

    pending = [(item, value) for item, value in marks.items() if value is not None]
    for start in range(0, len(pending), COMMIT_CONCURRENCY):
        await asyncio.gather(*(commit(i, v) for i, v in pending[start : start + COMMIT_CONCURRENCY]))


async def _secret(state: _Run, request: Request, settings: Settings) -> str | None:
    secret = await resolve_secret(request, settings, state.dapr)
    if secret and request.auth_type == "basic":
        state.redact.add_userinfo(secret)
    elif secret:
        state.redact.add(secret)
    return secret


def _skipped(record: RunRecord, skipped: list[tuple[str, str]]) -> None:
    record.counts["skipped"] += len(skipped)
    for key, reason in skipped:
        record.add_error(key, f"skipped: {reason}")


# -- items from another source (iteration.from_source) -------------------------------------------------


async def _child_tasks(
    state: _Run,
    settings: Settings,
    planner: Planner,
    window: Window,
    transport: httpx.AsyncBaseTransport,
    sleep: Callable[[float], Awaitable[None]],
) -> AsyncIterator[FetchTask]:
    """The tasks of a source over its parent's records, planned as the parent's pages arrive."""
    record = state.record
    parents = _Parents(state, settings, window, transport, sleep)
    index = 0
    try:
        async for item, ancestors in parents.records(list(state.loaded.parents)):
            record.counts["items"] += 1
            before = len(planner.skipped)
            task = planner.item(item, index, ancestors)
            index += 1
            _skipped(record, planner.skipped[before:])
            if task is not None:
                yield task
            if planner.full:
                break
        last = planner.flush()
        if last is not None:
            yield last
    finally:
        record.counts["parent_requests"] = parents.counts["requests"]


@dataclass
class _Parents:
    """A child run's parent chain, fetched now: with each parent's own request, auth, pagination and records,
    in this run's window, through the run's transport. Nothing of it is stored."""

    state: _Run
    settings: Settings
    window: Window
    transport: httpx.AsyncBaseTransport
    sleep: Callable[[float], Awaitable[None]]
    counts: dict[str, int] = field(default_factory=lambda: {"requests": 0, "retries": 0})

    async def records(
        self, chain: list[LoadedSource]
    ) -> AsyncIterator[tuple[dict[str, Any], dict[str, Any]]]:
        """Every record of ``chain[0]``'s pages, page by page, with the items its chain iterated over
        (``{foreach: item}``). A failed parent page ends the run: the child cannot know which of its items
        it would miss."""
        parent = chain[0]
        ing = parent.config.ingestion
        assert ing.request is not None
        secret = await _secret(self.state, ing.request, self.settings)
        named = await resolve_named_secrets(ing, self.settings, self.state.redact, self.state.dapr)
        tokens = await _tokens(self.state, parent.config, named, self.settings, None, self.sleep)
        fetcher = Fetcher(
            parent.config,
            self.transport,
            secret,
            self.state.redact,
            self.counts,
            sleep=self.sleep,
            tokens=tokens,
        )
        async for task, ancestors in self.tasks(chain, named):
            try:
                async for page in fetcher.pages(task):
                    for item in _items_of(page):
                        yield item, ancestors
            except FetchError as exc:
                message = f"parent source '{parent.source_id}' (item {task.key}): {exc.message}"
                raise IterationError(self.state.redact(message)) from None

    async def tasks(
        self, chain: list[LoadedSource], secrets: dict[str, str]
    ) -> AsyncIterator[tuple[FetchTask, dict[str, Any]]]:
        """``chain[0]``'s fetch tasks, each with the ancestors' items its records will carry. A parent item it
        skips is a skipped item of the run: the child cannot have that item's records."""
        parent, rest = chain[0], chain[1:]
        ing = parent.config.ingestion
        planner = Planner(parent.config, self.window, self.state.record.run_id, secrets=secrets)
        if ing.iteration is None:
            task = planner.single()
            if task is not None:
                yield task, {}
        elif ing.parent is not None:
            index = 0
            async for item, ancestors in self.records(rest):  # the grandparent's own secrets
                task = planner.item(item, index, ancestors)
                index += 1
                if task is not None:
                    yield task, {**ancestors, ing.iteration.foreach: item}
        else:
            for index, item in enumerate(await resolve_items(ing.iteration, self.settings) or []):
                task = planner.item(item, index)
                if task is not None:
                    yield task, {ing.iteration.foreach: item}
        skipped = [(f"{parent.source_id}:{k}", f"parent item skipped: {r}") for k, r in planner.skipped]
        _skipped(self.state.record, skipped)


def _items_of(page: Page) -> list[dict[str, Any]]:
    """A parent page's records, which must be objects (a child's items)."""
    if page.records is None:
        raise FetchError(
            f"page {page.number} from {page.url} has no records list ({describe(page.data)}):"
            " set records.path"
        )
    for number, item in enumerate(page.records):
        if not isinstance(item, dict):
            raise FetchError(
                f"record {number} of page {page.number} from {page.url} is {describe(item)}, not an object:"
                " a child's items are objects"
            )
    return page.records


def _documents(state: _Run, task: FetchTask, page: Page, window: Window) -> list[Document]:
    """The page as one document, or with ``records.split`` one document per record (linkage + page)."""
    config = state.loaded.config
    records = config.ingestion.records
    if records is None or not records.split:
        return [_document(state, task, page.data, page.body, page.content_type, task.linkage, page, window)]
    assert page.records is not None  # the fetcher fails a split item whose page has no records list
    linkage = {**task.linkage, "page": page.number}
    return [
        _document(state, task, record, json_bytes(record), "application/json", linkage, page, window)
        for record in page.records
    ]


def _document(
    state: _Run,
    task: FetchTask,
    data: Any,
    body: bytes,
    content_type: str,
    linkage: dict[str, Any],
    page: Page,
    window: Window,
) -> Document:
    config = state.loaded.config
    digest = content_hash(data, config.ingestion.dedup.ignore_fields)
    return Document(
        id=document_id(config.source_id, digest),
        source_id=config.source_id,
        content_hash=digest,
        content=body,
        content_type=content_type,
        linkage=linkage,
        run_id=state.record.run_id,
        window=window.stored,
        request={"url": page.url, "status": page.status, "page": page.number, "format": page.format},
        fetched_at=utcnow(),
        event_status="none" if isinstance(state.sink, NoEvents) else "pending",
    )


async def _writer(state: _Run) -> None:
    """Drain the queue in batches of up to BATCH_SIZE, one store call each.

    After the first document of a batch the writer waits up to BATCH_LINGER_SECONDS for more (unless a
    full batch is already waiting): fewer, larger transactions cost far less than one per few documents.
    """
    queue = state.queue
    while True:
        first = await queue.get()
        if first is None:
            return
        if queue.qsize() < BATCH_SIZE - 1:
            await asyncio.sleep(BATCH_LINGER_SECONDS)
        batch = [first]
        closing = False
        while len(batch) < BATCH_SIZE and not queue.empty():
            nxt = queue.get_nowait()
            if nxt is None:
                closing = True
                break
            batch.append(nxt)
        await _store_batch(state, batch)
        if closing:
            return


async def _store_batch(state: _Run, batch: list[Document]) -> None:
    record = state.record
    if state.store is None:
        for doc in batch:
            state.observer.dry_run_document(
                {
                    "source_id": doc.source_id,
                    "item": doc.linkage,
                    "request": doc.request,
                    "content_hash": doc.content_hash,
                    "content": json.loads(doc.content),
                }
            )
        return
    results = await state.store.insert_documents(batch)
    new = [doc for doc, is_new in zip(batch, results, strict=True) if is_new]
    record.counts["stored"] += len(new)
    record.counts["duplicates"] += len(batch) - len(new)
    if new and not isinstance(state.sink, NoEvents):
        await _publish(state, new)
    state.observer.stored(record)


async def _publish(state: _Run, docs: list[Document]) -> None:
    assert state.store is not None
    outcomes = await state.sink.publish(docs)
    sent = [d.id for d, failure in zip(docs, outcomes, strict=True) if failure is None]
    failures = [(d, f) for d, f in zip(docs, outcomes, strict=True) if f is not None]
    if sent:
        await state.store.mark_events(sent, "sent")
    state.record.events["sent"] += len(sent)
    state.record.events["pending"] += len(failures)
    if failures:
        reason = failures[0][1]
        state.record.add_error(
            None, state.redact(f"{len(failures)} event(s) to {state.sink.name} left pending: {reason}")
        )


async def _publish_pending(state: _Run) -> None:
    """The outbox: events of earlier runs that were stored but never acknowledged go out first."""
    if state.store is None or isinstance(state.sink, NoEvents):
        return
    while True:
        pending = await state.store.pending_events(state.record.source_id, BATCH_SIZE)
        if not pending:
            return
        before = state.record.events["pending"]
        await _publish(state, pending)
        if state.record.events["pending"] > before:  # the target is still down: keep the rest for later
            return

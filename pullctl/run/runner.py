"""One run of one source: plan -> bounded fan-out of fetches -> batched pipeline -> run record.

Memory stays flat: a fixed pool of ``concurrency`` workers pulls tasks from the plan, and pages go
through a bounded queue to one writer that stores them in batches; nothing holds all responses.
A failed item is recorded (key, reason, attempts) and the run goes on. A fatal error (store, MCP,
secret) ends the run as failed; whatever was stored before is kept and reported, never over-claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx

from pullctl.config.loader import LoadedSource
from pullctl.errors import FetchError, PullctlError
from pullctl.pipeline.documents import (
    Document,
    RunRecord,
    content_hash,
    document_id,
    new_run_id,
    utcnow,
)
from pullctl.pipeline.events import EventSink, NoEvents
from pullctl.pipeline.store import Store
from pullctl.redact import Redactor
from pullctl.run.fetch import Fetcher, Page
from pullctl.run.iteration import resolve_items
from pullctl.run.plan import FetchTask, Plan, Shard, Window, build_plan, scheduled_window
from pullctl.run.secrets import resolve_named_secrets, resolve_secret
from pullctl.run.transport import env_proxy, make_transport, proxy_userinfo
from pullctl.settings import Settings

BATCH_SIZE = 200
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
    replay_items: list[str] | None = None  # run only these item keys (``run --replay``)
    run_id: str | None = None


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
    store: Store | None
    sink: EventSink
    observer: RunObserver
    redact: Redactor
    queue: asyncio.Queue[Document | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=BATCH_SIZE * 2)
    )


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
    store: Store | None,
    *,
    options: RunOptions | None = None,
    sink: EventSink | None = None,
    observer: RunObserver | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    now: datetime | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> RunRecord:
    """Run ``loaded`` once and return its record. ``store`` None (or ``dry_run``) stores nothing."""
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
    state = _Run(loaded, record, store, sink, observer, Redactor())
    fatal = False
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
    secret = await resolve_secret(ing.request, settings)
    if secret:
        state.redact.add(secret)
        if ing.request.auth_type == "basic":
            state.redact.add(secret.partition(":")[2])
    named = await resolve_named_secrets(ing, settings, state.redact)
    items = await resolve_items(ing.iteration, settings)
    only = options.only
    if options.replay_items is not None and ing.iteration is not None:
        key_field = ing.iteration.key
        items = [i for i in items or [] if _key_in(i, key_field, options.replay_items)]
    plan = build_plan(
        config,
        window,
        items,
        record.run_id,
        shard=options.shard,
        only=only,
        overrides=options.overrides,
        limit=options.limit,
        secrets=named,
    )
    record.counts["items"] = plan.items
    record.counts["skipped"] = len(plan.skipped)
    for key, reason in plan.skipped:
        record.add_error(key, f"skipped: {reason}")
    state.observer.started(record, plan)
    if not plan.tasks:
        return
    concurrency = min(
        options.concurrency or (ing.iteration.concurrency if ing.iteration else 1), len(plan.tasks)
    )
    own_transport = transport is None
    if transport is None:
        proxy = env_proxy(ing.request.base_url, settings.environ)
        userinfo = proxy_userinfo(proxy) if proxy is not None else None
        if userinfo:
            state.redact.add(userinfo)
            state.redact.add(userinfo.partition(":")[2])
        transport = make_transport(concurrency, proxy)
    http = transport
    try:
        fetcher = Fetcher(config, http, secret, state.redact, record.counts, sleep=sleep)
        writer = asyncio.create_task(_writer(state))
        tasks = iter(plan.tasks)
        workers = [asyncio.create_task(_worker(state, fetcher, tasks, window)) for _ in range(concurrency)]
        fetching = asyncio.gather(*workers)
        try:
            await asyncio.wait([writer, fetching], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
            if writer.done():  # the writer only ends early on a store failure
                writer.result()
            fetching.result()
        finally:
            fetching.cancel()
            await asyncio.gather(fetching, return_exceptions=True)
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            if not writer.done():
                await state.queue.put(None)
            await writer  # re-raises a store failure
    finally:
        if own_transport:
            await http.aclose()


def _key_in(item: dict[str, Any], key_field: str | None, keys: list[str]) -> bool:
    from pullctl.run.plan import item_key

    key = item_key(item, key_field)
    return key is not None and str(key) in keys


async def _worker(state: _Run, fetcher: Fetcher, tasks: Any, window: Window) -> None:
    record = state.record
    for task in tasks:
        try:
            async for page in fetcher.pages(task):
                record.counts["pages"] += 1
                await state.queue.put(_document(state, task, page, window))
        except FetchError as exc:
            message = state.redact(exc.message)
            record.counts["failed"] += 1
            record.failed_items.append(task.key)
            record.add_error(task.key, message, exc.attempts)
            state.observer.item_done(record, task.key, message, exc.attempts)
            continue
        record.counts["fetched"] += 1
        state.observer.item_done(record, task.key, None)


def _document(state: _Run, task: FetchTask, page: Page, window: Window) -> Document:
    config = state.loaded.config
    digest = content_hash(page.data, config.ingestion.dedup.ignore_fields)
    return Document(
        id=document_id(config.source_id, digest),
        source_id=config.source_id,
        content_hash=digest,
        content=page.body,
        content_type=page.content_type,
        linkage=task.linkage,
        run_id=state.record.run_id,
        window=window.as_dict(),
        request={"url": page.url, "status": page.status, "page": page.number},
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
                    "content": _json(doc.content),
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


def _json(content: bytes) -> Any:
    import json

    return json.loads(content)

"""The run's pipeline end: pages become documents (one per page, or per record with ``records.split``), one
writer stores them in batches, and each new document's event goes out (or stays pending in the outbox)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pullctl.pipeline.documents import Document, content_hash, document_id, utcnow
from pullctl.pipeline.events import NoEvents
from pullctl.run.context import BATCH_SIZE, RunState
from pullctl.run.plan import FetchTask
from pullctl.run.reader import Page, json_bytes
from pullctl.run.windows import Window

BATCH_LINGER_SECONDS = 0.05


def documents(state: RunState, task: FetchTask, page: Page, window: Window) -> list[Document]:
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
    state: RunState,
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


async def store_documents(state: RunState) -> None:
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


async def _store_batch(state: RunState, batch: list[Document]) -> None:
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


async def _publish(state: RunState, docs: list[Document]) -> None:
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


async def publish_pending(state: RunState) -> None:
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

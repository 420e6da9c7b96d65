"""The store protocols every backend implements (SQLite embedded, MongoDB in production), and the factories.

Four narrow protocols, one per concern, so that code depends only on what it uses:

- ``DocumentStore``: ``raw_documents`` (dedup on insert) and its event outbox;
- ``RunStore``: ``pull_runs``;
- ``StateStore``: ``source_state`` (incremental marks, compare-and-swap) and ``auth_state`` (rotated
  credentials, encrypted by the caller);
- ``JobRegistry``: ``dapr_jobs`` (what ``jobs sync`` registered, so it can prune what it owns).

``Store`` is all four plus the lifecycle; both backends are one. ``open_store(settings)`` is the one way to
use a store for the length of a block: ``async with open_store(settings) as store: ...``. ``store_at(url)``
builds one without opening it, for a holder that keeps it open (``serve``).
Every method translates its backend's errors into ``StoreError`` with the location, password masked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from pullctl.errors import UsageError
from pullctl.pipeline.documents import Document, RunRecord
from pullctl.pipeline.state import AuthState, StateRecord
from pullctl.redact import mask_url

if TYPE_CHECKING:
    from pullctl.settings import Settings


class DocumentStore(Protocol):
    async def insert_documents(self, docs: list[Document]) -> list[bool]:
        """Store a batch; per document True = stored now, False = a duplicate (same source and hash)."""
        ...

    async def pending_events(self, source_id: str, limit: int = 1000) -> list[Document]:
        """Stored documents whose event is not yet acknowledged (the outbox), oldest first."""
        ...

    async def mark_events(self, document_ids: list[str], status: str) -> None: ...

    async def count_pending_events(self, source_id: str) -> int:
        """How many documents of ``source_id`` wait for their event (``pending_events``, not loaded)."""
        ...

    async def find_documents(self, source_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """Stored documents of a source, newest first, as plain dicts (content as bytes)."""
        ...

    async def count_documents(self, source_id: str) -> int: ...


class RunStore(Protocol):
    async def save_run(self, record: RunRecord) -> None:
        """Insert or replace a run record (written at start as running, and at finish)."""

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def list_runs(
        self, source_id: str | None = None, limit: int = 20, *, status: str | None = None
    ) -> list[RunRecord]:
        """Newest first; ``status``: only runs that ended so (the last success of a source)."""
        ...

    async def close_stale_runs(self, source_id: str, started_before: datetime, message: str) -> int:
        """Mark ``running`` records of ``source_id`` started before the cut-off as failed; return how many."""
        ...


class StateStore(Protocol):
    async def get_state(self, source_id: str, item: str | None = None) -> StateRecord | None: ...

    async def list_states(self, source_id: str | None = None) -> list[StateRecord]:
        """Every state of ``source_id`` (or of every source), ordered by ``_id``."""
        ...

    async def swap_state(self, record: StateRecord) -> bool:
        """Write ``record`` only if the stored state is still the one it succeeds, ``record.version - 1``
        (``record.version == 1``: no state yet). False, and nothing written, when another writer came
        first."""
        ...

    async def delete_states(self, source_id: str, item: str | None = None) -> int:
        """Remove one item's state, or (``item`` None) every state of the source; return how many."""
        ...

    async def get_auth_state(self, key: str) -> AuthState | None: ...

    async def put_auth_state(self, state: AuthState) -> None:
        """Insert or replace the credential kept for ``state.key``."""


class JobRegistry(Protocol):
    async def put_job(self, name: str, source_id: str, config_hash: str) -> None: ...

    async def list_jobs(self) -> list[dict[str, Any]]:
        """``{"_id", "source_id", "config_hash", "registered_at"}`` per registered job."""
        ...

    async def delete_job(self, name: str) -> None: ...


class PullStore(DocumentStore, RunStore, StateStore, Protocol):
    """What a run uses: documents and their outbox, its run record, the state between runs."""


class Store(PullStore, JobRegistry, Protocol):
    @property
    def location(self) -> str:
        """Where the store is, password masked (for messages)."""
        ...

    async def open(self) -> None:
        """Connect and create tables/indexes idempotently; fail fast when unreachable. A store opened
        ``read_only`` (``runs``, ``status``, ``state list``) creates nothing: where no store is yet, it reads
        as empty."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Check the store answers now (``/healthz``); a ``StoreError`` when it does not."""


class ConfigStore(Protocol):
    """``source_configs``: the config store (``PULLCTL_CONFIG=mongodb://…``, ``pullctl config push``). Only
    MongoDB is one: on a laptop the configs are files."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def put_config(self, source_id: str, config: dict[str, Any], config_hash: str) -> str:
        """Upsert a config; "created", "updated" or "unchanged" (same hash)."""
        ...

    async def get_config(self, source_id: str) -> dict[str, Any] | None:
        """``{"_id", "config", "config_hash", "updated_at"}`` or None."""
        ...

    async def list_configs(self) -> list[dict[str, Any]]: ...

    async def delete_config(self, source_id: str) -> bool: ...


def store_at(url: str, database: str = "pullctl", *, read_only: bool = False) -> Store:
    """The backend for ``url`` (not yet opened). ``read_only``: for commands that only read (``runs``,
    ``status``): opening creates no file, folder, collection or index."""
    if url.startswith("sqlite://"):
        from pullctl.pipeline.sqlite import SqliteStore

        return SqliteStore.from_url(url, read_only=read_only)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from pullctl.pipeline.mongo import MongoStore

        return MongoStore(url, database, read_only=read_only)
    raise UsageError(f"unknown store '{mask_url(url)}': use sqlite:///path/to/file.db or mongodb://host/")


@asynccontextmanager
async def open_store(settings: Settings, *, read_only: bool = False) -> AsyncIterator[Store]:
    """The store of ``settings`` (``PULLCTL_STORE``, ``PULLCTL_MONGODB_DATABASE``), open for the block."""
    store = store_at(settings.store, settings.mongodb_database, read_only=read_only)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def config_store_at(url: str, database: str = "pullctl") -> ConfigStore:
    """The config store at ``url`` (MongoDB; not yet opened)."""
    if not url.startswith(("mongodb://", "mongodb+srv://")):
        raise UsageError(
            f"the config store is MongoDB: set PULLCTL_CONFIG (or --to) to mongodb://…, not '{mask_url(url)}'"
        )
    from pullctl.pipeline.mongo import MongoStore

    return MongoStore(url, database)


@asynccontextmanager
async def open_config_store(url: str, database: str = "pullctl") -> AsyncIterator[ConfigStore]:
    """The config store at ``url``, open for the block."""
    store = config_store_at(url, database)
    await store.open()
    try:
        yield store
    finally:
        await store.close()

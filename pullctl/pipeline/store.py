"""The ``Store`` protocol every backend implements (SQLite embedded, MongoDB in production), and the factory.

The runner depends on this protocol only. ``open_store(url)`` picks the backend from ``PULLCTL_STORE``.
Every method translates its backend's errors into ``StoreError`` with the location, password masked.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Protocol

from pullctl.errors import UsageError
from pullctl.pipeline.documents import Document, RunRecord


class Store(Protocol):
    async def open(self) -> None:
        """Connect and create tables/indexes idempotently; fail fast when unreachable."""

    async def close(self) -> None: ...

    async def insert_documents(self, docs: list[Document]) -> list[bool]:
        """Store a batch; per document True = stored now, False = a duplicate (same source and hash)."""
        ...

    async def save_run(self, record: RunRecord) -> None:
        """Insert or replace a run record (written at start as running, and at finish)."""

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def list_runs(self, source_id: str | None = None, limit: int = 20) -> list[RunRecord]: ...

    async def close_stale_runs(self, source_id: str, started_before: datetime, message: str) -> int:
        """Mark ``running`` records of ``source_id`` started before the cut-off as failed; return how many."""
        ...

    async def pending_events(self, source_id: str, limit: int = 1000) -> list[Document]:
        """Stored documents whose event is not yet acknowledged (the outbox), oldest first."""
        ...

    async def mark_events(self, document_ids: list[str], status: str) -> None: ...

    async def find_documents(self, source_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """Stored documents of a source, newest first, as plain dicts (content as bytes)."""
        ...

    async def count_documents(self, source_id: str) -> int: ...

    # source_configs: the config store (``PULLCTL_CONFIG=mongodb://…``, ``pullctl config push``)

    async def put_config(self, source_id: str, config: dict[str, Any], config_hash: str) -> str:
        """Upsert a config; "created", "updated" or "unchanged" (same hash)."""
        ...

    async def get_config(self, source_id: str) -> dict[str, Any] | None:
        """``{"_id", "config", "config_hash", "updated_at"}`` or None."""
        ...

    async def list_configs(self) -> list[dict[str, Any]]: ...

    async def delete_config(self, source_id: str) -> bool: ...

    # dapr_jobs: what ``jobs sync`` registered, so it can prune what it owns

    async def put_job(self, name: str, source_id: str, config_hash: str) -> None: ...

    async def list_jobs(self) -> list[dict[str, Any]]:
        """``{"_id", "source_id", "config_hash", "registered_at"}`` per registered job."""
        ...

    async def delete_job(self, name: str) -> None: ...


def mask_url(url: str) -> str:
    """``mongodb://user:secret@host`` -> ``mongodb://user:***@host``."""
    return re.sub(r"(://[^:/@]+:)[^@/]+@", r"\1***@", url)


def open_store(url: str, database: str = "pullctl") -> Store:
    """The backend for ``url`` (not yet opened)."""
    if url.startswith("sqlite://"):
        from pullctl.pipeline.sqlite import SqliteStore

        return SqliteStore.from_url(url)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from pullctl.pipeline.mongo import MongoStore

        return MongoStore(url, database)
    raise UsageError(f"unknown store '{mask_url(url)}': use sqlite:///path/to/file.db or mongodb://host/")

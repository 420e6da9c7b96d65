"""The ``Store`` protocol every backend implements (SQLite embedded, MongoDB in production), and the factory.

The runner depends on this protocol only. ``open_store(url)`` picks the backend from ``PULLCTL_STORE``.
Every method translates its backend's errors into ``StoreError`` with the location, password masked.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import unquote

from pullctl.errors import UsageError
from pullctl.pipeline.documents import Document, RunRecord
from pullctl.redact import MASK, Redactor


class Store(Protocol):
    async def open(self) -> None:
        """Connect and create tables/indexes idempotently; fail fast when unreachable. A store opened
        ``read_only`` (``open_store(..., read_only=True)``: ``runs``, ``status``) creates nothing: where no
        store is yet, it reads as empty."""

    async def close(self) -> None: ...

    async def insert_documents(self, docs: list[Document]) -> list[bool]:
        """Store a batch; per document True = stored now, False = a duplicate (same source and hash)."""
        ...

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

    # dapr_jobs: what ``jobs sync`` registered, so it can prune what it owns

    async def put_job(self, name: str, source_id: str, config_hash: str) -> None: ...

    async def list_jobs(self) -> list[dict[str, Any]]:
        """``{"_id", "source_id", "config_hash", "registered_at"}`` per registered job."""
        ...

    async def delete_job(self, name: str) -> None: ...


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


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_USER = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]+:")


def _password_span(url: str) -> tuple[int, int] | None:
    """Where the password of ``scheme://user:password@host…`` is, also when it is not percent-encoded.

    The userinfo ends at the last ``@`` before the query, or, when no ``@`` comes before a ``?``, at the
    last ``@`` of all: a ``/``, ``?`` or ``@`` pasted into a password unencoded stays inside it.
    """
    user = _USER.match(url)
    if user is None:
        return None
    start = user.end()
    query = url.find("?", start)
    end = url.rfind("@", start, query) if query >= 0 else -1
    if end < 0:
        end = url.rfind("@", start)
    return (start, end) if end > start else None


def url_password(url: str) -> str | None:
    """The password in ``url`` as written there (percent-encoded or not), or None."""
    span = _password_span(url)
    return url[span[0] : span[1]] if span else None


def url_redactor(url: str) -> Redactor:
    """A ``Redactor`` for the password of ``url``: as written, decoded, and in their encoded forms."""
    redact = Redactor()
    password = url_password(url)
    if password:
        redact.add(password)
        redact.add(unquote(password))
    return redact


def mask_url(text: str) -> str:
    """``mongodb://user:secret@host`` -> ``mongodb://user:***@host``, for every URL in ``text``."""

    def mask(match: re.Match[str]) -> str:
        url = match.group()
        span = _password_span(url)
        return f"{url[: span[0]]}{MASK}{url[span[1] :]}" if span else url

    return _URL.sub(mask, text)


def open_store(url: str, database: str = "pullctl", *, read_only: bool = False) -> Store:
    """The backend for ``url`` (not yet opened). ``read_only``: for commands that only read (``runs``,
    ``status``): opening creates no file, folder, collection or index."""
    if url.startswith("sqlite://"):
        from pullctl.pipeline.sqlite import SqliteStore

        return SqliteStore.from_url(url, read_only=read_only)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from pullctl.pipeline.mongo import MongoStore

        return MongoStore(url, database, read_only=read_only)
    raise UsageError(f"unknown store '{mask_url(url)}': use sqlite:///path/to/file.db or mongodb://host/")


def open_config_store(url: str, database: str = "pullctl") -> ConfigStore:
    """The config store at ``url`` (MongoDB; not yet opened)."""
    if not url.startswith(("mongodb://", "mongodb+srv://")):
        raise UsageError(
            f"the config store is MongoDB: set PULLCTL_CONFIG (or --to) to mongodb://…, not '{mask_url(url)}'"
        )
    from pullctl.pipeline.mongo import MongoStore

    return MongoStore(url, database)

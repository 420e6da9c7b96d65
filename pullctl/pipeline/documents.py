"""Raw documents, their canonical content hash, and run records (DESIGN §5). Pure data, no I/O."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict, cast, get_args

from pullctl.canonical import canonical_hash
from pullctl.config.paths import parse_path
from pullctl.settings import Trigger

RunStatus = Literal["running", "succeeded", "partial", "failed"]
EventStatus = Literal["pending", "sent", "none"]  # none: no event sink
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)


class RequestCounts(TypedDict):
    """What a fetcher counts as it sends: a run's record, or a parent source's own tally."""

    requests: int
    retries: int


class Counts(TypedDict):
    """A run record's counts (``RunRecord.counts``), in the order they are stored and printed."""

    items: int
    fetched: int
    stored: int
    duplicates: int
    failed: int
    skipped: int
    pages: int
    requests: int
    retries: int
    parent_requests: int  # iteration.from_source: the requests made to fetch the parents' records


COUNT_NAMES: tuple[str, ...] = tuple(Counts.__annotations__)


def zero_counts() -> Counts:
    return cast(Counts, dict.fromkeys(COUNT_NAMES, 0))


MAX_RECORDED_ERRORS = 100


def utcnow() -> datetime:
    return datetime.now(UTC)


def drop_fields(value: Any, paths: list[str]) -> Any:
    """A copy of ``value`` without ``paths`` (dotted, or JSON Pointers for keys with dots: ``paths.py``);
    a path through a list applies to each element."""
    if not paths:
        return value
    split = [list(parse_path(p).parts) for p in paths]
    return _drop(value, split)


def _drop(value: Any, paths: list[list[str]]) -> Any:
    if isinstance(value, list):
        return [_drop(v, paths) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, sub in value.items():
        if [key] in paths:
            continue
        deeper = [p[1:] for p in paths if len(p) > 1 and p[0] == key]
        out[key] = _drop(sub, deeper) if deeper else sub
    return out


def content_hash(parsed: Any, ignore_fields: list[str]) -> str:
    """sha256 hex of the canonical JSON after ``dedup.ignore_fields`` are removed."""
    return canonical_hash(drop_fields(parsed, ignore_fields))


def document_id(source_id: str, digest: str) -> str:
    """Deterministic: the same content of the same source always has the same id (an idempotent event id)."""
    return hashlib.sha256(f"{source_id}\0{digest}".encode()).hexdigest()[:32]


def new_run_id(now: datetime | None = None) -> str:
    now = now or utcnow()
    return f"{now:%Y%m%dT%H%M%SZ}-{os.urandom(3).hex()}"


# The fields of a stored raw document (DESIGN §5), in the order every store returns them.
DOCUMENT_FIELDS = (
    "_id",
    "source_id",
    "content_hash",
    "content",
    "content_type",
    "size_bytes",
    "linkage",
    "run_id",
    "window",
    "request",
    "fetched_at",
    "event_status",
)


@dataclass
class Document:
    """One fetched page of one item, as stored in ``raw_documents``."""

    id: str
    source_id: str
    content_hash: str
    content: bytes
    content_type: str
    linkage: dict[str, Any]
    run_id: str
    window: dict[str, str]
    request: dict[str, Any]  # url (secrets redacted), status, page
    fetched_at: datetime
    event_status: EventStatus = "pending"

    @property
    def size_bytes(self) -> int:
        return len(self.content)

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> Document:
        """A document from a store's record of it (``DOCUMENT_FIELDS``, values already decoded)."""
        return cls(
            id=stored["_id"],
            source_id=stored["source_id"],
            content_hash=stored["content_hash"],
            content=bytes(stored["content"]),
            content_type=stored["content_type"],
            linkage=stored["linkage"],
            run_id=stored["run_id"],
            window=stored["window"],
            request=stored["request"],
            fetched_at=stored["fetched_at"],
            event_status=stored["event_status"],
        )

    def event(self) -> dict[str, Any]:
        """The domain event's data (DESIGN §5)."""
        return {
            "source_id": self.source_id,
            "document_id": self.id,
            "content_hash": self.content_hash,
            "run_id": self.run_id,
            "linkage": self.linkage,
            "size_bytes": self.size_bytes,
            "fetched_at": self.fetched_at.isoformat(),
        }


@dataclass
class RunError:
    item: str | None
    message: str
    attempts: int = 0


@dataclass
class RunRecord:
    """One run of one source, as stored in ``pull_runs`` and printed by ``run --output json``."""

    run_id: str
    source_id: str
    trigger: Trigger
    window: dict[str, str]
    started_at: datetime = field(default_factory=utcnow)
    status: RunStatus = "running"
    finished_at: datetime | None = None
    shard: str | None = None
    counts: Counts = field(default_factory=zero_counts)
    events: dict[str, int] = field(default_factory=lambda: {"sent": 0, "pending": 0})
    errors: list[RunError] = field(default_factory=list)
    failed_items: list[str] = field(default_factory=list)
    message: str | None = None  # a fatal error that ended the run

    def add_error(self, item: str | None, message: str, attempts: int = 0) -> None:
        if len(self.errors) < MAX_RECORDED_ERRORS:
            self.errors.append(RunError(item, message, attempts))

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = self.started_at.astimezone(UTC).isoformat()
        data["finished_at"] = self.finished_at.astimezone(UTC).isoformat() if self.finished_at else None
        data["duration_seconds"] = self.duration_seconds
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for name in ("started_at", "finished_at"):
            if isinstance(data.get(name), str):
                data[name] = datetime.fromisoformat(data[name])
            if isinstance(data.get(name), datetime) and data[name].tzinfo is None:
                data[name] = data[name].replace(tzinfo=UTC)
        data["errors"] = [RunError(**e) for e in data.get("errors") or []]
        data["counts"] = {**zero_counts(), **(data.get("counts") or {})}
        return cls(**data)

"""The MongoDB store's mapping: documents, run records and incremental states to BSON and back (pure)."""

from __future__ import annotations

from typing import Any

from pullctl.pipeline.documents import DOCUMENT_FIELDS, Document, RunRecord
from pullctl.pipeline.state import StateRecord

Mongo = dict[str, Any]


def document_bson(d: Document) -> Mongo:
    return {
        "_id": d.id,
        "source_id": d.source_id,
        "content_hash": d.content_hash,
        "content": d.content,  # bytes are stored as BSON binary (subtype 0) and read back as bytes
        "content_type": d.content_type,
        "size_bytes": d.size_bytes,
        "linkage": d.linkage,
        "run_id": d.run_id,
        "window": d.window,
        "request": d.request,
        "fetched_at": d.fetched_at,
        "event_status": d.event_status,
    }


def document_dict(doc: Mongo) -> dict[str, Any]:
    out = {name: doc.get(name) for name in DOCUMENT_FIELDS}
    out["content"] = bytes(out["content"] or b"")
    return out


def run_bson(record: RunRecord) -> Mongo:
    """The record's fields at the top level, ``_id`` = run id, datetimes as BSON dates."""
    data = record.to_dict()
    data.pop("duration_seconds", None)  # derived from the two datetimes
    data["_id"] = data.pop("run_id")
    data["started_at"] = record.started_at
    data["finished_at"] = record.finished_at
    return data


def state_bson(record: StateRecord) -> Mongo:
    return {
        "_id": record.id,
        "source_id": record.source_id,
        "item": record.item,
        "value": record.value,
        "run_id": record.run_id,
        "updated_at": record.updated_at,
        "version": record.version,
    }


def state_record(doc: Mongo) -> StateRecord:
    return StateRecord(
        doc["source_id"],
        doc.get("item"),
        doc.get("value"),
        doc.get("run_id"),
        doc["updated_at"],
        doc["version"],
    )


def run_record(doc: Mongo) -> RunRecord:
    data = dict(doc)
    data["run_id"] = data.pop("_id")
    return RunRecord.from_dict(data)

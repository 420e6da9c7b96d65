"""The config store: source configs in MongoDB's ``source_configs`` (DESIGN §5), for ``PULLCTL_CONFIG=mongodb://…``.

Reading goes through the same loader as files (each config is validated and located as
``mongodb:source_configs/<source_id>``), so a bad document in the store gets the same messages as a bad
file. ``push`` validates every file first and writes nothing if any is invalid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pullctl.config.loader import LoadedSource, LoadResult, load_paths, load_text
from pullctl.config.schedule import Target
from pullctl.errors import StoreError, UsageError
from pullctl.pipeline.store import Store, mask_url, open_store, url_redactor

COLLECTION = "source_configs"


def load_location(
    location: str, *, target: Target = "k8s", strict: bool = False, database: str = "pullctl"
) -> LoadResult:
    """Load configs from where ``PULLCTL_CONFIG`` / ``--config`` points: a folder, a file, or ``mongodb://…``."""
    if location.startswith(("mongodb://", "mongodb+srv://")):
        return load_from_mongodb(location, database, target=target, strict=strict)
    return load_paths([location], target=target, strict=strict)


def load_from_mongodb(
    url: str, database: str = "pullctl", *, target: Target = "k8s", strict: bool = False
) -> LoadResult:
    """Every config in ``source_configs`` (synchronous: it is called before any event loop runs)."""
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    client: MongoClient[dict[str, Any]] | None = None
    try:  # the client parses the URL: an invalid one is a PyMongoError too
        client = MongoClient(url, serverSelectionTimeoutMS=3000, tz_aware=True)
        docs = list(client[database][COLLECTION].find({}).sort("_id", 1))
    except PyMongoError as exc:
        reason = url_redactor(url)(mask_url(str(exc)))
        raise StoreError(
            f"cannot read configs from MongoDB at {mask_url(url)} (database {database}): {reason}"
        ) from None
    finally:
        if client is not None:
            client.close()
    result = LoadResult()
    for doc in docs:
        one = _load_document(doc)
        result.files += 1
        result.issues.extend(one.issues)
        result.sources.extend(one.sources)
    return result


def _load_document(doc: dict[str, Any], *, target: Target = "dapr", strict: bool = False) -> LoadResult:
    name = f"mongodb:{COLLECTION}/{doc.get('_id')}"
    text = yaml.safe_dump(doc.get("config"), sort_keys=False, allow_unicode=True)
    return load_text(text, name, target=target, strict=strict)


@dataclass
class PushResult:
    outcomes: list[tuple[str, str]] = field(default_factory=list)  # (source_id, created|updated|unchanged)
    changed: list[LoadedSource] = field(default_factory=list)


def require_mongodb(location: str) -> str:
    if not location.startswith(("mongodb://", "mongodb+srv://")):
        raise UsageError(
            f"the config store is MongoDB: set PULLCTL_CONFIG (or --to) to mongodb://…, not '{location}'"
        )
    return location


async def push_configs(
    paths: Sequence[str | Path], url: str, database: str, *, strict: bool = False
) -> PushResult:
    """Validate ``paths`` (all or nothing), then upsert each config with its hash."""
    loaded = load_paths(paths, target="dapr", strict=strict)
    loaded.raise_for_errors()
    store = open_store(require_mongodb(url), database)
    await store.open()
    try:
        result = PushResult()
        for src in loaded.sources:
            outcome = await store.put_config(src.source_id, src.raw, src.config_hash)
            result.outcomes.append((src.source_id, outcome))
            if outcome != "unchanged":
                result.changed.append(src)
        return result
    finally:
        await store.close()


async def get_config(url: str, database: str, source_id: str) -> dict[str, Any]:
    store = open_store(require_mongodb(url), database)
    await store.open()
    try:
        doc = await store.get_config(source_id)
    finally:
        await store.close()
    if doc is None:
        raise UsageError(f"no config '{source_id}' in the config store {mask_url(url)} (database {database})")
    config: dict[str, Any] = doc["config"]
    return config


async def delete_config(url: str, database: str, source_id: str) -> None:
    store: Store = open_store(require_mongodb(url), database)
    await store.open()
    try:
        if not await store.delete_config(source_id):
            raise UsageError(
                f"no config '{source_id}' in the config store {mask_url(url)} (database {database})"
            )
    finally:
        await store.close()

"""The config store: source configs in MongoDB's ``source_configs`` (DESIGN §5), for ``PULLCTL_CONFIG=mongodb://…``.

``MongoConfigReader`` is the store's ``ConfigReader`` for ``pullctl.config.source.ConfigSource``:
``open_config_source(location, database)`` gives every command its configs, from files or from here, and each
stored config is validated like a file (the command's target and ``--strict``) and located as
``mongodb:source_configs/<source_id>``, so a bad document gets the same messages as a bad file.
``push`` validates every file first and writes nothing if any is invalid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pullctl.config.loader import ConfigEntry, LoadedSource
from pullctl.config.source import ConfigSource, Location, is_mongodb
from pullctl.errors import StoreError, UsageError
from pullctl.pipeline.store import open_config_store
from pullctl.redact import mask_url, url_redactor

COLLECTION = "source_configs"


class MongoConfigReader:
    """The config store as a ``ConfigReader``: one entry per document of ``source_configs``, by ``_id``.

    Synchronous (``pymongo.MongoClient``): commands read configs before any event loop runs, and ``serve``
    reads them in a thread. pymongo is imported only when the store is read.
    """

    def __init__(self, url: str, database: str = "pullctl") -> None:
        self.url = url
        self.database = database

    def entries(self) -> list[ConfigEntry]:
        return [_entry(doc) for doc in self._documents()]

    def where(self) -> str:
        return f"{mask_url(self.url)} (database {self.database}): 0 documents in {COLLECTION}"

    def _documents(self) -> list[dict[str, Any]]:
        from pymongo import MongoClient
        from pymongo.errors import PyMongoError

        client: MongoClient[dict[str, Any]] | None = None
        try:  # the client parses the URL: an invalid one is a PyMongoError too
            client = MongoClient(self.url, serverSelectionTimeoutMS=3000, tz_aware=True)
            return list(client[self.database][COLLECTION].find({}).sort("_id", 1))
        except PyMongoError as exc:
            reason = url_redactor(self.url)(mask_url(str(exc)))
            where = f"{mask_url(self.url)} (database {self.database})"
            raise StoreError(f"cannot read configs from MongoDB at {where}: {reason}") from None
        finally:
            if client is not None:
                client.close()


def _entry(doc: dict[str, Any]) -> ConfigEntry:
    """A stored config as the YAML text the loader locates issues in (``mongodb:source_configs/<id>``)."""
    text = yaml.safe_dump(doc.get("config"), sort_keys=False, allow_unicode=True)
    return ConfigEntry(f"mongodb:{COLLECTION}/{doc.get('_id')}", text)


def open_config_source(location: Location, database: str = "pullctl") -> ConfigSource:
    """The configs where ``PULLCTL_CONFIG`` / ``--config`` points: folders and files, or one ``mongodb://…``
    URL (the ``source_configs`` collection of ``database``)."""
    paths = [location] if isinstance(location, str | Path) else list(location)
    stores = [str(p) for p in paths if is_mongodb(p)]
    if not stores:
        return ConfigSource(location)
    if len(paths) > 1:
        raise UsageError(
            f"{mask_url(stores[0])}: read one MongoDB config store, or files and folders; not both at once"
        )
    return ConfigSource(stores[0], MongoConfigReader(stores[0], database))


@dataclass
class PushResult:
    outcomes: list[tuple[str, str]] = field(default_factory=list)  # (source_id, created|updated|unchanged)
    changed: list[LoadedSource] = field(default_factory=list)


async def push_configs(
    paths: Sequence[str | Path], url: str, database: str, *, strict: bool = False
) -> PushResult:
    """Validate ``paths`` (all or nothing), then upsert each config with its hash."""
    loaded = ConfigSource(paths).all(target="dapr", strict=strict)
    loaded.raise_for_errors()
    async with open_config_store(url, database) as store:
        result = PushResult()
        for src in loaded.sources:
            outcome = await store.put_config(src.source_id, src.raw, src.config_hash)
            result.outcomes.append((src.source_id, outcome))
            if outcome != "unchanged":
                result.changed.append(src)
        return result


async def get_config(url: str, database: str, source_id: str) -> dict[str, Any]:
    async with open_config_store(url, database) as store:
        doc = await store.get_config(source_id)
    if doc is None:
        raise UsageError(f"no config '{source_id}' in the config store {mask_url(url)} (database {database})")
    config: dict[str, Any] = doc["config"]
    return config


async def delete_config(url: str, database: str, source_id: str) -> None:
    async with open_config_store(url, database) as store:
        deleted = await store.delete_config(source_id)
    if not deleted:
        raise UsageError(f"no config '{source_id}' in the config store {mask_url(url)} (database {database})")

"""The production store: MongoDB through pymongo's asyncio API, collections shaped as in DESIGN §5.

``raw_documents`` holds one document per stored page (``_id`` = document id, ``content`` as BSON binary,
``linkage`` / ``window`` / ``request`` as subdocuments, ``fetched_at`` as a UTC date); a unique index
on (``source_id``, ``content_hash``) makes a duplicate a no-op, also when two runs race. ``pull_runs``
holds one document per run (``_id`` = run id, the record's fields at the top level). ``source_state``
holds incremental marks (``_id`` = source id or source id/item key, compare-and-swap on ``version``),
``auth_state`` rotated credentials (encrypted by the caller). ``source_configs`` and ``dapr_jobs`` are created
here and filled elsewhere.

Behaves like ``SqliteStore`` (tests/test_store_contract.py runs one suite against both) except where BSON
sets limits: datetimes come back truncated to the millisecond (and always in UTC); a document over 16 MB
or an integer wider than 8 bytes in ``linkage`` is a ``StoreError``.

Every pymongo and BSON error is translated into ``StoreError`` in one place (``_translate_errors``); the
message names the server URL with its password masked and the database. Only standard commands are used
(``ping``, ``createIndexes``, ``listCollections``, ``create``, ``insert``, ``update``, ``find``,
``aggregate``), and nothing depends on index names, ``keyValue`` in duplicate-key errors or an upsert
taking ``_id`` from its filter, so the code runs unchanged against MongoDB 6+ and the nx-27017 test server.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import pymongo
from bson.errors import BSONError
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    BulkWriteError,
    CollectionInvalid,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
)

from pullctl.errors import StoreError
from pullctl.pipeline.documents import DOCUMENT_FIELDS, Document, RunRecord
from pullctl.pipeline.mongo_bson import (
    Mongo,
    document_bson,
    document_dict,
    run_bson,
    run_record,
    state_bson,
    state_record,
)
from pullctl.pipeline.state import AuthState, StateRecord, state_id
from pullctl.redact import mask_url, url_redactor

P = ParamSpec("P")
R = TypeVar("R")

DUPLICATE_KEY = 11000
NAMESPACE_EXISTS = 48
DEFAULT_TIMEOUT = 3.0

# (collection, keys, unique); created idempotently by ``open()``. Names are left to the server: nx-27017
# rewrites them anyway, and pymongo's default name is what a hand-made index of the same keys would have.
INDEXES: tuple[tuple[str, list[tuple[str, int]], bool], ...] = (
    ("raw_documents", [("source_id", ASCENDING), ("content_hash", ASCENDING)], True),
    (
        "raw_documents",
        [("source_id", ASCENDING), ("event_status", ASCENDING), ("fetched_at", ASCENDING)],
        False,
    ),
    ("pull_runs", [("source_id", ASCENDING), ("started_at", ASCENDING)], False),
    ("source_state", [("source_id", ASCENDING)], False),
)
PLAIN_COLLECTIONS = ("source_configs", "dapr_jobs", "auth_state")

_PROJECTION = dict.fromkeys(DOCUMENT_FIELDS, 1)


def _translate_errors(
    method: Callable[Concatenate[MongoStore, P], Awaitable[R]],
) -> Callable[Concatenate[MongoStore, P], Coroutine[Any, Any, R]]:
    """Where pymongo enters: any driver or BSON error of ``method`` becomes one ``StoreError``."""

    @functools.wraps(method)
    async def wrapper(self: MongoStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(self, *args, **kwargs)
        # OverflowError: BSON has no integer wider than 8 bytes (an upstream JSON may hold one).
        except (PyMongoError, BSONError, OverflowError) as exc:
            raise self._error(exc) from None

    return wrapper


class MongoStore:
    """A ``Store`` in the MongoDB database ``database`` at ``url``.

    ``timeout`` bounds ``open()``: an unreachable server fails it after that many seconds. Later operations
    use the driver's own server selection timeout (30 s, or ``serverSelectionTimeoutMS`` in the URL), so a
    replica-set election during a run delays writes instead of failing them.
    """

    def __init__(
        self, url: str, database: str, *, timeout: float = DEFAULT_TIMEOUT, read_only: bool = False
    ) -> None:
        self.url = url
        self.read_only = read_only  # open() creates no collection or index (reading commands)
        self.database = database
        self.timeout = timeout
        self._client: AsyncMongoClient[Mongo] | None = None
        self._redact = url_redactor(url)

    @property
    def location(self) -> str:
        return f"{mask_url(self.url)} (database {self.database})"

    # -- errors ------------------------------------------------------------------------------------------

    def _error(self, exc: BaseException) -> StoreError:
        if isinstance(exc, ConnectionFailure):
            return StoreError(f"cannot reach MongoDB at {self.location}: {self._reason(exc)}")
        return StoreError(f"MongoDB store {self.location}: {self._reason(exc)}")

    def _reason(self, exc: BaseException) -> str:
        """The driver's message without the topology dump and timeout settings, the password masked."""
        if isinstance(exc, BulkWriteError):
            refused = _refused(exc)
            first = refused[0] if refused else {}
            more = f" and {len(refused) - 1} more" if len(refused) > 1 else ""
            text = f"write refused: {first.get('errmsg', 'unknown error')} (code {first.get('code')}){more}"
        elif (
            isinstance(exc, OperationFailure) and isinstance(exc.details, dict) and exc.details.get("errmsg")
        ):
            name = exc.details.get("codeName") or f"code {exc.code}"
            text = f"{exc.details['errmsg']} ({name})"
        else:
            text = str(exc) or type(exc).__name__
        text = text.split(", Timeout: ", 1)[0]
        text = re.sub(r" \(configured timeouts: [^)]*\)", "", text)
        return self._redact(mask_url(text))

    # -- lifecycle -----------------------------------------------------------------------------------------

    @property
    def _db(self) -> AsyncDatabase[Mongo]:
        if self._client is None:
            raise StoreError(f"store {self.location} is not open")
        return self._client[self.database]

    def _collection(self, name: str) -> AsyncCollection[Mongo]:
        return self._db[name]

    @_translate_errors
    async def open(self) -> None:
        """Connect, check the server answers within ``timeout``, create collections and indexes.

        Idempotent: a second call (or another process) finds everything in place.
        """
        if self._client is None:
            self._client = AsyncMongoClient(self.url, tz_aware=True, tzinfo=UTC, appname="pullctl")
        try:
            with pymongo.timeout(self.timeout):
                if self.read_only:  # not through the database: some servers create it on any command
                    await self._client.admin.command("ping")
                    return
                await self._db.command("ping")
            # Not under the short timeout: building a new index on a large collection may take a while.
            for collection, keys, unique in INDEXES:
                await self._collection(collection).create_index(keys, unique=unique)
            existing = set(await self._db.list_collection_names())
            for name in PLAIN_COLLECTIONS:
                if name not in existing:
                    await self._create_collection(name)
        except BaseException:
            await self.close()
            raise

    async def _create_collection(self, name: str) -> None:
        try:
            await self._db.create_collection(name)
        except CollectionInvalid:
            pass  # created meanwhile by another process
        except OperationFailure as exc:
            if exc.code != NAMESPACE_EXISTS:
                raise

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    @_translate_errors
    async def ping(self) -> None:
        with pymongo.timeout(self.timeout):
            await self._db.command("ping")

    # -- raw documents -------------------------------------------------------------------------------------

    @_translate_errors
    async def insert_documents(self, docs: list[Document]) -> list[bool]:
        if not docs:
            return []
        stored = [True] * len(docs)
        try:
            await self._collection("raw_documents").insert_many(
                [document_bson(d) for d in docs], ordered=False
            )
        except BulkWriteError as exc:
            if _refused(exc):
                raise  # not only duplicates: translated by _translate_errors
            # ``index`` is the position in ``docs`` (pymongo adds the offset of each sub-batch). Not
            # ``keyValue``: nx-27017 does not send it, and the index tells the position without it.
            for error in exc.details.get("writeErrors", []):
                stored[error["index"]] = False
        return stored

    @_translate_errors
    async def pending_events(self, source_id: str, limit: int = 1000) -> list[Document]:
        if limit == 0:
            return []
        cursor = (
            self._collection("raw_documents")
            .find({"source_id": source_id, "event_status": "pending"}, _PROJECTION)
            .sort("fetched_at", ASCENDING)
            .limit(max(limit, 0))
        )
        return [Document.from_stored(d) async for d in cursor]

    @_translate_errors
    async def count_pending_events(self, source_id: str) -> int:
        query = {"source_id": source_id, "event_status": "pending"}
        return await self._collection("raw_documents").count_documents(query)

    @_translate_errors
    async def mark_events(self, document_ids: list[str], status: str) -> None:
        if document_ids:
            await self._collection("raw_documents").update_many(
                {"_id": {"$in": list(document_ids)}}, {"$set": {"event_status": status}}
            )

    @_translate_errors
    async def find_documents(self, source_id: str, limit: int = 100) -> list[dict[str, Any]]:
        if limit == 0:
            return []
        cursor = (
            self._collection("raw_documents")
            .find({"source_id": source_id}, _PROJECTION)
            .sort("fetched_at", DESCENDING)
            .limit(max(limit, 0))
        )
        return [document_dict(d) async for d in cursor]

    @_translate_errors
    async def count_documents(self, source_id: str) -> int:
        return await self._collection("raw_documents").count_documents({"source_id": source_id})

    # -- runs ----------------------------------------------------------------------------------------------

    @_translate_errors
    async def save_run(self, record: RunRecord) -> None:
        doc = run_bson(record)
        # The replacement carries ``_id`` itself: the upsert must not rely on the server taking it from the
        # filter (nx-27017 does not).
        await self._collection("pull_runs").replace_one({"_id": doc["_id"]}, doc, upsert=True)

    @_translate_errors
    async def get_run(self, run_id: str) -> RunRecord | None:
        doc = await self._collection("pull_runs").find_one({"_id": run_id})
        return run_record(doc) if doc else None

    @_translate_errors
    async def list_runs(
        self, source_id: str | None = None, limit: int = 20, *, status: str | None = None
    ) -> list[RunRecord]:
        if limit == 0:
            return []
        query = {name: value for name, value in (("source_id", source_id), ("status", status)) if value}
        cursor = self._collection("pull_runs").find(query).sort("started_at", DESCENDING).limit(max(limit, 0))
        return [run_record(d) async for d in cursor]

    @_translate_errors
    async def close_stale_runs(self, source_id: str, started_before: datetime, message: str) -> int:
        result = await self._collection("pull_runs").update_many(
            {"source_id": source_id, "status": "running", "started_at": {"$lt": started_before}},
            {"$set": {"status": "failed", "finished_at": datetime.now(UTC), "message": message}},
        )
        return result.matched_count

    # -- configs and DAPR job registry ----------------------------------------------------------------

    @_translate_errors
    async def put_config(self, source_id: str, config: dict[str, Any], config_hash: str) -> str:
        coll = self._collection("source_configs")
        existing = await coll.find_one({"_id": source_id}, {"config_hash": 1})
        if existing and existing.get("config_hash") == config_hash:
            return "unchanged"
        doc = {
            "_id": source_id,
            "config": config,
            "config_hash": config_hash,
            "updated_at": datetime.now(UTC),
        }
        await coll.replace_one({"_id": source_id}, doc, upsert=True)
        return "updated" if existing else "created"

    @_translate_errors
    async def get_config(self, source_id: str) -> dict[str, Any] | None:
        return await self._collection("source_configs").find_one({"_id": source_id})

    @_translate_errors
    async def list_configs(self) -> list[dict[str, Any]]:
        return [d async for d in self._collection("source_configs").find({}).sort("_id", ASCENDING)]

    @_translate_errors
    async def delete_config(self, source_id: str) -> bool:
        result = await self._collection("source_configs").delete_one({"_id": source_id})
        return result.deleted_count > 0

    @_translate_errors
    async def put_job(self, name: str, source_id: str, config_hash: str) -> None:
        doc = {
            "_id": name,
            "source_id": source_id,
            "config_hash": config_hash,
            "registered_at": datetime.now(UTC),
        }
        await self._collection("dapr_jobs").replace_one({"_id": name}, doc, upsert=True)

    @_translate_errors
    async def list_jobs(self) -> list[dict[str, Any]]:
        return [d async for d in self._collection("dapr_jobs").find({}).sort("_id", ASCENDING)]

    @_translate_errors
    async def delete_job(self, name: str) -> None:
        await self._collection("dapr_jobs").delete_one({"_id": name})

    # -- state between runs ------------------------------------------------------------------------------

    @_translate_errors
    async def get_state(self, source_id: str, item: str | None = None) -> StateRecord | None:
        doc = await self._collection("source_state").find_one({"_id": state_id(source_id, item)})
        return state_record(doc) if doc else None

    @_translate_errors
    async def list_states(self, source_id: str | None = None) -> list[StateRecord]:
        query = {"source_id": source_id} if source_id else {}
        return [
            state_record(d) async for d in self._collection("source_state").find(query).sort("_id", ASCENDING)
        ]

    @_translate_errors
    async def swap_state(self, record: StateRecord) -> bool:
        coll = self._collection("source_state")
        doc = state_bson(record)
        if record.version == 1:
            try:
                await coll.insert_one(doc)
            except DuplicateKeyError:
                return False
            return True
        result = await coll.replace_one({"_id": record.id, "version": record.version - 1}, doc)
        return result.matched_count == 1

    @_translate_errors
    async def delete_states(self, source_id: str, item: str | None = None) -> int:
        query = {"source_id": source_id} if item is None else {"_id": state_id(source_id, item)}
        result = await self._collection("source_state").delete_many(query)
        return result.deleted_count

    @_translate_errors
    async def get_auth_state(self, key: str) -> AuthState | None:
        doc = await self._collection("auth_state").find_one({"_id": key})
        if doc is None:
            return None
        return AuthState(key, doc["ciphertext"], doc["fingerprint"], doc.get("run_id"), doc["updated_at"])

    @_translate_errors
    async def put_auth_state(self, state: AuthState) -> None:
        doc = {
            "_id": state.key,
            "ciphertext": state.ciphertext,
            "fingerprint": state.fingerprint,
            "run_id": state.run_id,
            "updated_at": state.updated_at,
        }
        await self._collection("auth_state").replace_one({"_id": state.key}, doc, upsert=True)


def _refused(exc: BulkWriteError) -> list[dict[str, Any]]:
    """The errors of a bulk insert other than duplicate keys (which are not errors here)."""
    details = exc.details
    errors = [e for e in details.get("writeErrors", []) if e.get("code") != DUPLICATE_KEY]
    return errors + list(details.get("writeConcernErrors", []))

"""The ``Store`` contract: one suite, run against SQLite and MongoDB, so the two backends cannot drift.

Datetimes in these tests are whole milliseconds: BSON dates keep no more (see ``pullctl/pipeline/mongo.py``).
"""

from __future__ import annotations

import asyncio
import gc
import re
import time
import warnings
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import BulkWriteError

from pullctl.errors import StoreError, UsageError
from pullctl.pipeline.documents import Document, RunRecord, document_id
from pullctl.pipeline.mongo import MongoStore
from pullctl.pipeline.state import AuthState, StateRecord
from pullctl.pipeline.store import ConfigStore, Store, config_store_at, open_config_store, store_at
from tests.stores import (
    Stores,
    StoreTarget,
    anyio_backend,
    mongo_database,
    mongo_uri,
    store,
    store_target,
    stores,
)

# The fixtures, imported for pytest.
__all__ = ["anyio_backend", "mongo_database", "mongo_uri", "store", "store_target", "stores"]

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
WINDOW = {"start": "2026-03-01T05:00:00+00:00", "end": "2026-03-01T06:00:00+00:00"}


def doc(
    content: str,
    source_id: str = "weather-api",
    *,
    id: str | None = None,
    at: datetime = T0,
    linkage: dict[str, Any] | None = None,
    run_id: str = "run-1",
) -> Document:
    """A document whose hash is its content (the real hash is tested elsewhere); the id is the real one."""
    return Document(
        id=id or document_id(source_id, content),
        source_id=source_id,
        content_hash=content,
        content=f'{{"value": "{content}"}}'.encode(),
        content_type="application/json",
        linkage=linkage if linkage is not None else {"region": content},
        run_id=run_id,
        window=WINDOW,
        request={"url": f"https://api.example/v1?q={content}&apikey=***", "status": 200, "page": 1},
        fetched_at=at,
    )


def run(
    run_id: str, source_id: str = "weather-api", started_at: datetime = T0, status: str = "running"
) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        source_id=source_id,
        trigger="schedule",
        window=WINDOW,
        started_at=started_at,
        status=status,
    )


# -- raw documents: dedup ------------------------------------------------------------------------------------


async def test_a_new_document_is_stored(store: Store) -> None:
    assert await store.insert_documents([doc("a")]) == [True]
    assert await store.count_documents("weather-api") == 1


async def test_the_same_content_again_is_a_duplicate_and_stored_once(store: Store) -> None:
    first = doc("a", linkage={"region": "first"})
    await store.insert_documents([first])

    # Same source and hash: the same (deterministic) id, and another id (the unique index decides, not _id).
    assert await store.insert_documents([doc("a", linkage={"region": "again"})]) == [False]
    assert await store.insert_documents([doc("a", id="other-id", linkage={"region": "other"})]) == [False]

    stored = await store.find_documents("weather-api")
    assert [(d["_id"], d["linkage"]) for d in stored] == [(first.id, {"region": "first"})]
    assert await store.count_documents("weather-api") == 1


async def test_the_same_content_under_another_source_is_stored(store: Store) -> None:
    assert await store.insert_documents([doc("a", "weather-api")]) == [True]
    assert await store.insert_documents([doc("a", "soil-api")]) == [True]
    assert await store.count_documents("weather-api") == 1
    assert await store.count_documents("soil-api") == 1


async def test_a_mixed_batch_reports_each_document(store: Store) -> None:
    await store.insert_documents([doc("old")])

    batch = [doc("new-1"), doc("old"), doc("new-2"), doc("new-1", id="new-1-again"), doc("old", id="x")]
    assert await store.insert_documents(batch) == [True, False, True, False, False]

    stored = {d["content_hash"]: d["_id"] for d in await store.find_documents("weather-api")}
    assert stored == {
        "old": document_id("weather-api", "old"),
        "new-1": document_id("weather-api", "new-1"),
        "new-2": document_id("weather-api", "new-2"),
    }


async def test_an_id_taken_by_other_content_is_not_new_and_the_rest_of_the_batch_is(store: Store) -> None:
    await store.insert_documents([doc("old"), *(doc(f"n{i}") for i in range(10))])
    taken = doc("other", id=document_id("weather-api", "old"))  # another hash under a stored _id
    batch = [doc(f"n{i}") for i in range(300)] + [taken] + [doc(f"m{i}") for i in range(300)]

    assert await store.insert_documents(batch) == [False] * 10 + [True] * 290 + [False] + [True] * 300
    assert await store.count_documents("weather-api") == 601
    hashes = {d["content_hash"] for d in await store.find_documents("weather-api", limit=1000)}
    assert "other" not in hashes and "old" in hashes


async def test_a_batch_sent_as_several_messages_reports_each_document(store: Store) -> None:
    # 40 x 1.5 MB exceed one 48 MB wire message: the driver splits the batch, and the duplicates at the end
    # (in the second message) must still be reported at their place in the batch.
    big = [doc(f"big-{i}") for i in range(40)]
    for d in big:
        d.content = d.content_hash.encode().ljust(1_500_000, b" ")
    batch = [*big, doc("big-1"), doc("small-1"), doc("big-39", id="other"), doc("small-2")]

    assert await store.insert_documents(batch) == [True] * 40 + [False, True, False, True]
    assert await store.count_documents("weather-api") == 42


async def test_an_empty_batch_stores_nothing(store: Store) -> None:
    assert await store.insert_documents([]) == []
    assert await store.count_documents("weather-api") == 0


async def test_two_stores_racing_on_the_same_content_store_it_once(stores: Stores) -> None:
    one, two = await stores.open(), await stores.open()
    batch = [doc(f"c{i}", at=T0 + timedelta(seconds=i)) for i in range(50)]

    first, second = await asyncio.gather(one.insert_documents(batch), two.insert_documents(list(batch)))

    assert [a + b for a, b in zip(first, second, strict=True)] == [1] * 50  # exactly one True per document
    assert await one.count_documents("weather-api") == 50
    assert await two.count_documents("weather-api") == 50


async def test_a_single_document_raced_by_two_stores_is_new_exactly_once(stores: Stores) -> None:
    one, two = await stores.open(), await stores.open()
    for i in range(20):
        results = await asyncio.gather(
            one.insert_documents([doc(f"r{i}")]), two.insert_documents([doc(f"r{i}")])
        )
        assert sorted(r[0] for r in results) == [False, True]
    assert await one.count_documents("weather-api") == 20


# -- raw documents: reading ----------------------------------------------------------------------------------


async def test_find_documents_round_trips_every_field(store: Store) -> None:
    original = doc(
        "a", linkage={"region": "kericho", "latitude": -0.37, "id": 7, "active": True, "tag": None}
    )
    original.content = b'{"temperature_2m": [21.5, 22.0]}\n\x00\xff'  # any bytes, not only UTF-8
    await store.insert_documents([original])

    [found] = await store.find_documents("weather-api")

    assert found == {
        "_id": original.id,
        "source_id": "weather-api",
        "content_hash": "a",
        "content": b'{"temperature_2m": [21.5, 22.0]}\n\x00\xff',
        "content_type": "application/json",
        "size_bytes": 35,
        "linkage": {"region": "kericho", "latitude": -0.37, "id": 7, "active": True, "tag": None},
        "run_id": "run-1",
        "window": WINDOW,
        "request": {"url": "https://api.example/v1?q=a&apikey=***", "status": 200, "page": 1},
        "fetched_at": T0,
        "event_status": "pending",
    }
    assert list(found) == [
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
    ]
    assert type(found["content"]) is bytes
    assert found["fetched_at"].utcoffset() == timedelta(0)


async def test_find_documents_is_newest_first_per_source_and_limited(store: Store) -> None:
    await store.insert_documents(
        [
            doc("b", at=T0 + timedelta(minutes=2)),
            doc("a", at=T0 + timedelta(minutes=1)),
            doc("c", at=T0 + timedelta(minutes=3, milliseconds=1)),
            doc("z", "soil-api", at=T0 + timedelta(hours=1)),
        ]
    )

    assert [d["content_hash"] for d in await store.find_documents("weather-api")] == ["c", "b", "a"]
    assert [d["content_hash"] for d in await store.find_documents("weather-api", limit=2)] == ["c", "b"]
    assert await store.find_documents("weather-api", limit=0) == []
    assert await store.find_documents("nobody") == []


async def test_count_documents_counts_one_source(store: Store) -> None:
    await store.insert_documents([doc("a"), doc("b"), doc("a", "soil-api"), doc("a")])
    assert await store.count_documents("weather-api") == 2
    assert await store.count_documents("soil-api") == 1
    assert await store.count_documents("nobody") == 0


async def test_datetimes_keep_milliseconds(store: Store) -> None:
    at = datetime(2026, 3, 1, 6, 0, 0, 123_000, tzinfo=UTC)
    await store.insert_documents([doc("a", at=at)])
    [found] = await store.find_documents("weather-api")
    assert found["fetched_at"] == at


# -- the outbox ----------------------------------------------------------------------------------------------


async def test_pending_events_are_the_new_documents_oldest_first(store: Store) -> None:
    await store.insert_documents(
        [
            doc("b", at=T0 + timedelta(seconds=2)),
            doc("a", at=T0 + timedelta(seconds=1)),
            doc("c", at=T0 + timedelta(seconds=3)),
            doc("x", "soil-api"),
        ]
    )
    await store.insert_documents([doc("a", at=T0 + timedelta(hours=1))])  # a duplicate emits no event

    pending = await store.pending_events("weather-api")

    assert [d.content_hash for d in pending] == ["a", "b", "c"]
    assert pending[0] == doc("a", at=T0 + timedelta(seconds=1))
    assert [d.content_hash for d in await store.pending_events("weather-api", limit=2)] == ["a", "b"]


async def test_marked_events_leave_the_outbox(store: Store) -> None:
    docs = [doc(c, at=T0 + timedelta(seconds=i)) for i, c in enumerate("abcd")]
    await store.insert_documents(docs)

    await store.mark_events([docs[0].id, docs[2].id], "sent")
    await store.mark_events([], "sent")

    assert [d.content_hash for d in await store.pending_events("weather-api")] == ["b", "d"]
    statuses = {d["content_hash"]: d["event_status"] for d in await store.find_documents("weather-api")}
    assert statuses == {"a": "sent", "b": "pending", "c": "sent", "d": "pending"}


async def test_a_document_stored_without_an_event_sink_is_not_pending(store: Store) -> None:
    quiet = doc("a")
    quiet.event_status = "none"
    await store.insert_documents([quiet, doc("b")])
    assert [d.content_hash for d in await store.pending_events("weather-api")] == ["b"]


# -- runs ----------------------------------------------------------------------------------------------------


async def test_a_run_saved_at_start_is_replaced_at_finish(store: Store) -> None:
    record = run("run-1")
    await store.save_run(record)
    assert await store.get_run("run-1") == record

    record.status = "partial"
    record.finished_at = T0 + timedelta(minutes=3, milliseconds=250)
    record.shard = "0/2"
    record.counts.update(items=3, fetched=2, stored=1, duplicates=1, failed=1, pages=2, requests=4, retries=2)
    record.events = {"sent": 1, "pending": 0}
    record.add_error("kericho", "HTTP 503 after 3 attempts", 3)
    record.failed_items = ["kericho"]
    await store.save_run(record)

    saved = await store.get_run("run-1")
    assert saved == record
    assert saved is not None and saved.duration_seconds == 180.25
    assert [r.run_id for r in await store.list_runs()] == ["run-1"]


async def test_get_run_of_an_unknown_id_is_none(store: Store) -> None:
    assert await store.get_run("no-such-run") is None


async def test_list_runs_is_newest_first_filtered_and_limited(store: Store) -> None:
    for i, source in enumerate(["weather-api", "soil-api", "weather-api", "weather-api", "soil-api"]):
        await store.save_run(run(f"run-{i}", source, T0 + timedelta(hours=i)))

    assert [r.run_id for r in await store.list_runs()] == ["run-4", "run-3", "run-2", "run-1", "run-0"]
    assert [r.run_id for r in await store.list_runs("weather-api")] == ["run-3", "run-2", "run-0"]
    assert [r.run_id for r in await store.list_runs("weather-api", limit=2)] == ["run-3", "run-2"]
    assert [r.run_id for r in await store.list_runs(limit=1)] == ["run-4"]
    assert await store.list_runs("nobody") == []


async def test_list_runs_filters_by_status(store: Store) -> None:
    for i, status in enumerate(["succeeded", "failed", "succeeded", "partial"]):
        await store.save_run(run(f"run-{i}", started_at=T0 + timedelta(hours=i), status=status))
    await store.save_run(run("soil", "soil-api", T0 + timedelta(hours=9), status="succeeded"))

    assert [r.run_id for r in await store.list_runs("weather-api", 1, status="succeeded")] == ["run-2"]
    assert [r.run_id for r in await store.list_runs(status="succeeded")] == ["soil", "run-2", "run-0"]
    assert await store.list_runs("weather-api", status="running") == []


async def test_count_pending_events_counts_the_outbox_of_one_source(store: Store) -> None:
    quiet = doc("q")
    quiet.event_status = "none"
    await store.insert_documents([doc("a"), doc("b"), quiet, doc("x", "soil-api")])
    await store.mark_events([doc("a").id], "sent")
    assert await store.count_pending_events("weather-api") == 1
    assert await store.count_pending_events("soil-api") == 1
    assert await store.count_pending_events("nobody") == 0


async def test_a_read_only_store_where_there_is_none_reads_empty_and_creates_nothing(
    store_target: StoreTarget, tmp_path: Path
) -> None:
    if store_target.kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'not' / 'yet' / 'pullctl.db'}"
    else:
        url = store_target.url
    reader = store_at(url, store_target.database, read_only=True)
    await reader.open()
    try:
        assert await reader.list_runs() == []
        assert await reader.get_run("run-1") is None
        assert await reader.count_pending_events("weather-api") == 0
    finally:
        await reader.close()
    if store_target.kind == "sqlite":
        assert not (tmp_path / "not").exists()
    else:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(store_target.url)
        try:
            # open() made no collection and no index. (nx-27017 creates a database and a collection that a
            # read names, as MongoDB does not; those hold nothing and no index.)
            database = client[store_target.database]
            names = await database.list_collection_names()
            assert not {"source_configs", "dapr_jobs"} & set(names)
            for name in names:
                assert list(await database[name].index_information()) == ["_id_"]
        finally:
            await client.close()


async def test_a_read_only_store_reads_what_a_writer_stored(stores: Stores) -> None:
    writer = await stores.open()
    await writer.save_run(run("run-1", status="succeeded"))
    reader = store_at(stores.target.url, stores.target.database, read_only=True)
    await reader.open()
    try:
        assert [r.run_id for r in await reader.list_runs()] == ["run-1"]
    finally:
        await reader.close()


async def test_close_stale_runs_closes_only_older_running_records_of_the_source(store: Store) -> None:
    cut_off = T0 + timedelta(hours=1)
    await store.save_run(run("stale", started_at=T0))
    await store.save_run(run("done", started_at=T0, status="succeeded"))
    await store.save_run(run("current", started_at=cut_off + timedelta(seconds=1)))
    await store.save_run(run("other-source", "soil-api", started_at=T0))
    before = datetime.now(UTC) - timedelta(milliseconds=1)

    closed = await store.close_stale_runs("weather-api", cut_off, "no heartbeat since 2026-03-01T06:00Z")

    assert closed == 1
    stale = await store.get_run("stale")
    assert stale is not None
    assert (stale.status, stale.message) == ("failed", "no heartbeat since 2026-03-01T06:00Z")
    assert stale.finished_at is not None and before <= stale.finished_at <= datetime.now(UTC)
    statuses = {r.run_id: r.status for r in await store.list_runs(limit=10)}
    assert statuses == {
        "stale": "failed",
        "done": "succeeded",
        "current": "running",
        "other-source": "running",
    }
    assert await store.close_stale_runs("weather-api", cut_off, "again") == 0


# -- datetimes are instants, whatever their offset -----------------------------------------------------------


async def test_datetimes_with_another_offset_are_ordered_as_instants_and_read_back_in_utc(
    store: Store,
) -> None:
    berlin = timezone(timedelta(hours=2))
    await store.insert_documents(
        [doc("earlier", at=T0.astimezone(berlin)), doc("later", at=T0 + timedelta(hours=1))]
    )
    await store.save_run(run("stale", started_at=(T0 - timedelta(minutes=30)).astimezone(berlin)))

    found = await store.find_documents("weather-api")
    assert [d["content_hash"] for d in found] == ["later", "earlier"]
    assert found[1]["fetched_at"].utcoffset() == timedelta(0)
    assert await store.close_stale_runs("weather-api", T0, "stale") == 1


# -- lifecycle -----------------------------------------------------------------------------------------------


async def test_open_twice_is_idempotent(stores: Stores) -> None:
    store = await stores.open()
    await store.insert_documents([doc("a")])
    await store.open()
    again = await stores.open()  # a second process on the same store

    assert await store.insert_documents([doc("a")]) == [False]
    assert await again.count_documents("weather-api") == 1


async def test_a_store_that_is_not_open_says_so(stores: Stores) -> None:
    unopened = stores.new()
    try:
        with pytest.raises(StoreError, match=r"^store .+ is not open$"):
            await unopened.count_documents("weather-api")
    finally:
        await unopened.close()


# -- MongoDB only --------------------------------------------------------------------------------------------


class RefusingMongoStore(MongoStore):
    """A MongoDB store whose server refuses one document of each batch for a reason other than a duplicate
    (a validation error, which nx-27017 cannot produce), after reporting another as a duplicate."""

    def _collection(self, name: str) -> Any:
        return self

    async def insert_many(self, documents: list[dict[str, Any]], ordered: bool) -> None:
        assert ordered is False
        raise BulkWriteError(
            {
                "writeErrors": [
                    {"index": 0, "code": 11000, "errmsg": "E11000 duplicate key error", "op": documents[0]},
                    {"index": 1, "code": 121, "errmsg": "Document failed validation", "op": documents[1]},
                ],
                "writeConcernErrors": [],
                "nInserted": len(documents) - 2,
            }
        )


async def test_a_write_error_other_than_a_duplicate_is_a_store_error() -> None:
    store = RefusingMongoStore("mongodb://user:s3cret@127.0.0.1:1/", "pullctl")
    with pytest.raises(StoreError) as caught:
        await store.insert_documents([doc("a"), doc("b"), doc("c")])
    assert str(caught.value) == (
        "MongoDB store mongodb://user:***@127.0.0.1:1/ (database pullctl):"
        " write refused: Document failed validation (code 121)"
    )


async def open_failure(store: MongoStore) -> tuple[str, float]:
    """The message of the ``StoreError`` that ``store.open()`` raises, and the seconds it took.

    pymongo 4.20.1 leaks a socket when a client is closed while its monitor is connecting
    (``pool_shared._async_create_connection`` does not close it on ``CancelledError``; PYTHON-5867), and
    against an unreachable server the monitor is always connecting. That socket is collected here, its
    ResourceWarning silenced, once the error (whose context reaches the monitor) is gone.
    """
    started = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            await store.open()
        except StoreError as exc:
            assert exc.__cause__ is None and exc.__suppress_context__  # one message, no driver traceback
            return str(exc), time.monotonic() - started
        finally:
            gc.collect()
    pytest.fail("open() did not fail")


async def test_an_unreachable_mongodb_fails_fast_with_one_clear_message() -> None:
    message, seconds = await open_failure(MongoStore("mongodb://user:s3cret@127.0.0.1:1/", "pullctl"))

    assert seconds < 5
    assert re.fullmatch(
        r"cannot reach MongoDB at mongodb://user:\*\*\*@127\.0\.0\.1:1/ \(database pullctl\): "
        r"127\.0\.0\.1:1: \[Errno \d+\] Connect call failed \('127\.0\.0\.1', 1\)",
        message,
    ), message
    assert "s3cret" not in message


async def test_open_timeout_is_configurable() -> None:
    message, seconds = await open_failure(MongoStore("mongodb://127.0.0.1:1/", "pullctl", timeout=0.5))

    assert seconds < 2
    assert message.startswith(
        "cannot reach MongoDB at mongodb://127.0.0.1:1/ (database pullctl): 127.0.0.1:1: "
    )


@pytest.mark.mongo
async def test_mongodb_collections_have_the_documented_shape(mongo_uri: str) -> None:
    database = f"pullctl_test_shape_{time.time_ns()}"
    store = MongoStore(mongo_uri, database)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
    try:
        await store.open()
        stored = doc("a")
        await store.insert_documents([stored])
        record = run("run-1")
        record.add_error("kericho", "boom", 2)
        await store.save_run(record)

        db = client[database]
        assert {
            "raw_documents",
            "pull_runs",
            "source_configs",
            "dapr_jobs",
            "source_state",
            "auth_state",
        } <= set(await db.list_collection_names())
        raw = await db.raw_documents.find_one({"_id": stored.id})
        assert raw is not None
        assert raw["content"] == stored.content and isinstance(raw["content"], bytes)  # BSON binary
        assert raw["fetched_at"] == T0.replace(
            tzinfo=None
        )  # a BSON date (naive UTC to a non-tz-aware client)
        assert raw["window"] == WINDOW
        assert raw["request"]["status"] == 200
        assert raw["linkage"] == {"region": "a"}
        assert raw["size_bytes"] == len(stored.content)

        saved = await db.pull_runs.find_one({"_id": "run-1"})
        assert saved is not None
        assert saved["source_id"] == "weather-api"
        assert saved["status"] == "running"
        assert saved["started_at"] == T0.replace(tzinfo=None)
        assert saved["counts"]["items"] == 0
        assert saved["errors"] == [{"item": "kericho", "message": "boom", "attempts": 2}]
        assert "run_id" not in saved and "record" not in saved

        await store.swap_state(StateRecord("weather-api", "kericho", "2026-03-01", "run-1", T0, 1))
        state = await db.source_state.find_one({"_id": "weather-api/kericho"})
        assert state is not None
        assert (state["source_id"], state["item"], state["value"], state["version"]) == (
            "weather-api",
            "kericho",
            "2026-03-01",
            1,
        )
        assert state["updated_at"] == T0.replace(tzinfo=None)
    finally:
        await store.close()
        await client.drop_database(database)
        await client.close()


# -- the config store and the DAPR job registry ---------------------------------------------------------------


async def test_config_store_round_trip(mongo_uri: str, mongo_database: str) -> None:
    async with open_config_store(mongo_uri, mongo_database) as store:
        await _config_round_trip(store)


def test_only_mongodb_is_a_config_store() -> None:
    with pytest.raises(
        UsageError, match=r"the config store is MongoDB: set PULLCTL_CONFIG \(or --to\) to mongodb"
    ):
        config_store_at("sqlite:///x.db")


async def _config_round_trip(store: ConfigStore) -> None:
    config = {"source_id": "a", "ingestion": {"schedule": "@daily", "request": {"base_url": "https://x/"}}}
    assert await store.put_config("a", config, "h1") == "created"
    assert await store.put_config("a", config, "h1") == "unchanged"
    assert await store.put_config("a", {**config, "enabled": False}, "h2") == "updated"
    got = await store.get_config("a")
    assert got is not None and got["config"]["enabled"] is False and got["config_hash"] == "h2"
    assert got["updated_at"].tzinfo is not None
    await store.put_config("b", config, "h3")
    assert [c["_id"] for c in await store.list_configs()] == ["a", "b"]
    assert await store.delete_config("a") is True
    assert await store.delete_config("a") is False
    assert await store.get_config("a") is None


async def test_job_registry(store: Store) -> None:
    await store.put_job("pull-a", "a", "h1")
    await store.put_job("pull-b", "b", "h2")
    await store.put_job("pull-a", "a", "h9")
    jobs = await store.list_jobs()
    assert [(j["_id"], j["source_id"], j["config_hash"]) for j in jobs] == [
        ("pull-a", "a", "h9"),
        ("pull-b", "b", "h2"),
    ]
    await store.delete_job("pull-a")
    await store.delete_job("pull-missing")
    assert [j["_id"] for j in await store.list_jobs()] == ["pull-b"]


# -- state between runs: source_state and auth_state ---------------------------------------------------------


async def test_a_state_is_created_once_then_advanced_by_version(store: Store) -> None:
    assert await store.get_state("weather-api") is None
    first = StateRecord("weather-api", None, "2026-03-01T00:00:00Z", "run-1", T0, 1)
    assert await store.swap_state(first) is True
    assert await store.swap_state(first) is False  # a second "first" write loses: the state exists
    assert await store.get_state("weather-api") == first
    second = first.successor({"token": "abc", "n": 2}, "run-2", T0 + timedelta(hours=1))
    assert second.version == 2
    assert await store.swap_state(second) is True
    assert await store.get_state("weather-api") == second


async def test_a_stale_writer_loses_the_swap_and_changes_nothing(store: Store) -> None:
    base = StateRecord("weather-api", None, 10, "run-1", T0, 1)
    await store.swap_state(base)
    winner, loser = base.successor(30, "run-a", T0), base.successor(20, "run-b", T0)
    assert await store.swap_state(winner) is True
    assert await store.swap_state(loser) is False
    got = await store.get_state("weather-api")
    assert got is not None and (got.value, got.run_id, got.version) == (30, "run-a", 2)


async def test_item_states_are_kept_apart_listed_and_deleted(store: Store) -> None:
    for source, item, value in [("a", None, 1), ("a", "x/y", 2), ("a", "z", 3), ("b", "x/y", 4)]:
        assert await store.swap_state(StateRecord(source, item, value, "run-1", T0, 1))
    assert (await store.get_state("a", "x/y")) == StateRecord("a", "x/y", 2, "run-1", T0, 1)
    assert [(s.item, s.value) for s in await store.list_states("a")] == [(None, 1), ("x/y", 2), ("z", 3)]
    assert [s.id for s in await store.list_states()] == ["a", "a/x/y", "a/z", "b/x/y"]
    assert await store.delete_states("a", "z") == 1
    assert await store.delete_states("a", "z") == 0
    assert await store.delete_states("a") == 2
    assert [s.id for s in await store.list_states()] == ["b/x/y"]


async def test_auth_state_is_replaced_per_key(store: Store) -> None:
    assert await store.get_auth_state("graph") is None
    await store.put_auth_state(AuthState("graph", "gAAAA-one", "fp1", "run-1", T0))
    await store.put_auth_state(AuthState("other", "gAAAA-x", "fp9", None, T0))
    later = AuthState("graph", "gAAAA-two", "fp1", "run-2", T0 + timedelta(minutes=5))
    await store.put_auth_state(later)
    assert await store.get_auth_state("graph") == later


async def test_ping_answers_while_open_and_fails_when_closed(stores: Stores) -> None:
    store = await stores.open()
    await store.ping()
    closed = stores.new()
    with pytest.raises(StoreError, match="is not open"):
        await closed.ping()

"""Store write throughput: SQLite against MongoDB (the nx-27017 test server, or any MongoDB).

Not a test: it prints figures. 20,000 documents of about 2 KB, half of them duplicates (every content twice,
shuffled, so some duplicates fall in the same batch), inserted with ``insert_documents`` in batches; then
reads the outbox back. Each backend starts empty (a temporary SQLite file, a fresh MongoDB database that is
dropped afterwards).

    .venv/bin/python bench/store_bench.py                       # batches of 500
    .venv/bin/python bench/store_bench.py --batch-size 100 --batch-size 500 --batch-size 2000
    PULLCTL_TEST_MONGODB_URI=mongodb://127.0.0.1:27018 .venv/bin/python bench/store_bench.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pymongo import AsyncMongoClient

from pullctl.canonical import canonical_json
from pullctl.errors import StoreError
from pullctl.pipeline.documents import Document, content_hash, document_id
from pullctl.pipeline.store import Store, store_at

SOURCE = "bench-api"
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def make_documents(total: int, size: int, seed: int = 7) -> list[Document]:
    """``total`` documents of about ``size`` bytes; ``total // 2`` distinct contents, each twice."""
    rng = random.Random(seed)
    distinct = []
    for i in range(total // 2):
        body = {"region": f"r{i}", "hourly": [round(rng.uniform(-20, 40), 2) for _ in range(size // 6)]}
        raw = canonical_json(body)
        digest = content_hash(body, [])
        distinct.append((i, raw, digest))
    order = distinct * 2
    rng.shuffle(order)
    return [
        Document(
            id=document_id(SOURCE, digest),
            source_id=SOURCE,
            content_hash=digest,
            content=raw,
            content_type="application/json",
            linkage={"region": f"r{i}"},
            run_id="bench-run",
            window={"start": T0.isoformat(), "end": (T0 + timedelta(hours=1)).isoformat()},
            request={"url": f"https://api.example/v1/forecast?region=r{i}", "status": 200, "page": 1},
            fetched_at=T0 + timedelta(milliseconds=n),
        )
        for n, (i, raw, digest) in enumerate(order)
    ]


@dataclass
class Result:
    backend: str
    batch_size: int
    documents: int
    stored: int
    seconds: float
    outbox_seconds: float

    @property
    def per_second(self) -> float:
        return self.documents / self.seconds


async def measure(backend: str, store: Store, docs: list[Document], batch_size: int) -> Result:
    """Insert ``docs`` into the opened, empty ``store`` in batches, read the outbox; close the store."""
    try:
        stored = 0
        started = time.perf_counter()
        for at in range(0, len(docs), batch_size):
            stored += sum(await store.insert_documents(docs[at : at + batch_size]))
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        pending = await store.pending_events(SOURCE, limit=len(docs))
        outbox_seconds = time.perf_counter() - started
        expected = len({d.content_hash for d in docs})
        if stored != expected or len(pending) != expected or await store.count_documents(SOURCE) != expected:
            raise SystemExit(f"{backend}: stored {stored}, pending {len(pending)}, expected {expected}")
    finally:
        await store.close()
    return Result(backend, batch_size, len(docs), stored, seconds, outbox_seconds)


async def drop(url: str, database: str) -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(url)
    try:
        await client.drop_database(database)
    finally:
        await client.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=2048, help="approximate bytes per document")
    parser.add_argument("--batch-size", type=int, action="append", dest="batch_sizes")
    parser.add_argument(
        "--mongodb", default=os.environ.get("PULLCTL_TEST_MONGODB_URI", "mongodb://127.0.0.1:27017")
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per result on stdout")
    args = parser.parse_args()

    docs = make_documents(args.documents, args.size)
    mean = sum(d.size_bytes for d in docs) / len(docs)
    print(f"{len(docs)} documents, {mean:.0f} bytes on average, half duplicates", file=sys.stderr)

    results: list[Result] = []
    for batch_size in args.batch_sizes or [500]:
        with tempfile.TemporaryDirectory() as tmp:
            sqlite = store_at(f"sqlite:///{tmp}/bench.db")
            await sqlite.open()
            results.append(await measure("sqlite", sqlite, docs, batch_size))
        database = f"pullctl_bench_{uuid.uuid4().hex[:12]}"
        mongo = store_at(args.mongodb, database)
        try:
            await mongo.open()
        except StoreError as exc:
            print(f"mongodb skipped: {exc}", file=sys.stderr)
            continue
        try:
            results.append(await measure("mongodb", mongo, docs, batch_size))
        finally:
            await drop(args.mongodb, database)

    if args.json:
        for r in results:
            print(json.dumps({**r.__dict__, "per_second": round(r.per_second)}))
        return
    print(
        f"{'backend':<8} {'batch':>6} {'docs':>7} {'stored':>7} {'seconds':>8} {'docs/s':>8} {'outbox read s':>14}"
    )
    for r in results:
        print(
            f"{r.backend:<8} {r.batch_size:>6} {r.documents:>7} {r.stored:>7} {r.seconds:>8.2f}"
            f" {r.per_second:>8.0f} {r.outbox_seconds:>14.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())

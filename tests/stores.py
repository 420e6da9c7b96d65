"""Store fixtures: every store test runs once against SQLite and once against MongoDB.

Import the fixtures into a test module (``from tests.stores import anyio_backend, store, stores, ...``) and
mark its tests ``@pytest.mark.anyio``.

MongoDB is the nx-27017 wire-protocol server that ``.ci/run`` starts, found through
``PULLCTL_TEST_MONGODB_URI``. When that variable is unset, ``mongodb://127.0.0.1:27017`` is tried and the
MongoDB tests are skipped only if nothing answers there; when it is set, a server that does not answer fails
them (CI must never pass by skipping). Each test gets its own database, dropped afterwards.
"""

from __future__ import annotations

import gc
import os
import re
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient, MongoClient
from pymongo.errors import PyMongoError

from pullctl.pipeline.store import Store, store_at
from pullctl.redact import mask_url

MONGODB_URI_VAR = "PULLCTL_TEST_MONGODB_URI"
DEFAULT_MONGODB_URI = "mongodb://127.0.0.1:27017"
START_HINT = ".venv/bin/nx-27017 -d --db memory --host 127.0.0.1 -p 27017"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def _ping(uri: str, timeout_ms: int) -> str | None:
    """None when the server answers ``ping``, else the reason."""
    client: MongoClient[dict[str, object]] = MongoClient(uri, serverSelectionTimeoutMS=timeout_ms)
    try:
        client.admin.command("ping")
    except PyMongoError as exc:
        return re.sub(r" \(configured timeouts: [^)]*\)", "", str(exc).split(", Timeout: ", 1)[0])
    finally:
        client.close()
    return None


@pytest.fixture
def pymongo_socket_leaks_tolerated() -> Iterator[None]:
    """pymongo 4.20 leaks its monitor's socket when a client closes while connecting (PYTHON-5867): a
    ResourceWarning whenever the garbage collector gets to it, in this test or a later one. Silenced, and
    collected before and after the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
        yield
        gc.collect()


@pytest.fixture
def mongo_database(mongo_uri: str) -> Iterator[str]:
    """A fresh database name on the MongoDB test server, dropped after the test."""
    name = f"pullctl_test_{uuid.uuid4().hex[:10]}"
    yield name
    client: MongoClient[dict[str, object]] = MongoClient(mongo_uri)
    try:
        client.drop_database(name)
    finally:
        client.close()


@pytest.fixture(scope="session")
def mongo_uri() -> str:
    """The MongoDB test server's URI (skip when none is configured and none runs on the default port)."""
    uri = os.environ.get(MONGODB_URI_VAR)
    if uri:
        reason = _ping(uri, 5000)
        if reason:
            pytest.fail(f"{MONGODB_URI_VAR}={mask_url(uri)} does not answer: {reason}", pytrace=False)
        return uri
    if _ping(DEFAULT_MONGODB_URI, 500):
        pytest.skip(
            f"MongoDB test server not reachable: set {MONGODB_URI_VAR} (nothing answers at "
            f"{DEFAULT_MONGODB_URI}; start one with `{START_HINT}`)"
        )
    return DEFAULT_MONGODB_URI


@dataclass
class StoreTarget:
    """Where a test's store lives: a SQLite file, or a MongoDB database of its own."""

    kind: str  # "sqlite" | "mongodb"
    url: str
    database: str = "pullctl"


@dataclass
class Stores:
    """Opens store instances on one target (each its own connection/client); closes and cleans up after."""

    target: StoreTarget
    opened: list[Store] = field(default_factory=list)

    def new(self) -> Store:
        """A store on the target, not opened (and not cleaned up unless opened through ``open``)."""
        return store_at(self.target.url, self.target.database)

    async def open(self) -> Store:
        store = self.new()
        await store.open()
        self.opened.append(store)
        return store

    async def aclose(self) -> None:
        for store in reversed(self.opened):
            await store.close()
        if self.target.kind == "mongodb":
            client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(self.target.url)
            try:
                await client.drop_database(self.target.database)
            finally:
                await client.close()


@pytest.fixture(params=["sqlite", pytest.param("mongodb", marks=pytest.mark.mongo)])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> StoreTarget:
    if request.param == "sqlite":
        return StoreTarget("sqlite", f"sqlite:///{tmp_path / 'pullctl.db'}")
    uri: str = request.getfixturevalue("mongo_uri")
    return StoreTarget("mongodb", uri, f"pullctl_test_{uuid.uuid4().hex[:16]}")


@pytest.fixture
async def stores(store_target: StoreTarget) -> AsyncIterator[Stores]:
    factory = Stores(store_target)
    try:
        yield factory
    finally:
        await factory.aclose()


@pytest.fixture
async def store(stores: Stores) -> Store:
    """An opened store, SQLite or MongoDB (the test runs once for each)."""
    return await stores.open()

"""Store fixtures: every store test runs once against SQLite and once against MongoDB.

Import the fixtures into a test module (``from tests.stores import anyio_backend, store, stores, ...``) and
mark its tests ``@pytest.mark.anyio``.

MongoDB is the nx-27017 wire-protocol server (``.venv/bin/nx-27017``, installed with the dev extras). With
``PULLCTL_TEST_MONGODB_URI`` set, the tests use the server there, and one that does not answer fails them.
Unset, the session starts its own on a free loopback port (in-memory, stopped at the end), so ``make test``
runs every test on a fresh clone and none is skipped. Each test gets its own database, dropped afterwards.
"""

from __future__ import annotations

import gc
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient, MongoClient
from pymongo.errors import PyMongoError

from pullctl.pipeline.store import Store, store_at
from pullctl.redact import mask_url

MONGODB_URI_VAR = "PULLCTL_TEST_MONGODB_URI"
SERVER_BINARY = Path(sys.executable).with_name("nx-27017")
START_SECONDS = 30.0  # a loaded CI machine: the server's first answer can take a few seconds


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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def mongodb_test_server(workdir: Path) -> Iterator[str]:
    """An nx-27017 server, in memory, on a free loopback port; its URI. Stopped (by its pid) on exit."""
    if not SERVER_BINARY.exists():
        pytest.fail(f"{SERVER_BINARY} is missing: run `make install` (the dev extras install it)")
    port = _free_port()
    pid_file, log_file = workdir / "nx-27017.pid", workdir / "nx-27017.log"
    command = [str(SERVER_BINARY), "-d", "--db", "memory", "--host", "127.0.0.1", "-p", str(port)]
    command += ["--pid-file", str(pid_file), "--log-file", str(log_file)]
    subprocess.run(command, check=True, capture_output=True, timeout=START_SECONDS)
    uri = f"mongodb://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while (reason := _ping(uri, 500)) is not None:
            if time.monotonic() > deadline:
                log = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
                pytest.fail(f"nx-27017 on port {port} did not answer: {reason}\n{log}", pytrace=False)
            time.sleep(0.1)
        yield uri
    finally:
        if pid_file.exists():
            pid = int(pid_file.read_text().strip())
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The MongoDB test server's URI: ``PULLCTL_TEST_MONGODB_URI``, else a server of this session's own."""
    uri = os.environ.get(MONGODB_URI_VAR)
    if uri:
        reason = _ping(uri, 5000)
        if reason:
            pytest.fail(f"{MONGODB_URI_VAR}={mask_url(uri)} does not answer: {reason}", pytrace=False)
        yield uri
        return
    with mongodb_test_server(tmp_path_factory.mktemp("mongodb")) as started:
        yield started


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

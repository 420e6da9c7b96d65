"""A MongoDB store that dies mid-run: documents not stored are reported, none are claimed as stored, and the
rerun against the restarted server completes them with no duplicates."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from tests.runkit import write_load_source
from tests.servers.upstream import Upstream

ITEMS = 40
NX = Path(sys.executable).parent / "nx-27017"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(db: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            str(NX),
            "--db",
            str(db),
            "--host",
            "127.0.0.1",
            "-p",
            str(port),
            "--pid-file",
            str(db) + ".pid",
            "--log-file",
            str(db) + ".log",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    pytest.fail("nx-27017 did not start")


def _stored(uri: str) -> list[dict[str, Any]]:
    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=3000)
    try:
        return list(client["pullctl"]["raw_documents"].find({}, {"content_hash": 1}))
    finally:
        client.close()


@pytest.mark.skipif(not NX.exists(), reason="nx-27017 is not installed (pip install -e '.[dev]')")
def test_store_dies_mid_run(tmp_path: Path, upstream: Upstream) -> None:
    port = _free_port()
    uri = f"mongodb://127.0.0.1:{port}"
    server = _start(tmp_path / "nx.db", port)
    write_load_source(tmp_path / "cfg", upstream.url, ITEMS, source_id="slow", concurrency=2, hourly=True)
    env = {
        **os.environ,
        "PULLCTL_CONFIG": str(tmp_path / "cfg"),
        "PULLCTL_STORE": uri,
        "PULLCTL_LOG_FORMAT": "json",
    }
    upstream.fail("/v1/forecast", "delay", delay=0.2)
    try:
        run = subprocess.Popen(
            [sys.executable, "-m", "pullctl", "run", "slow", "--output", "json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2.0)
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        out, err = run.communicate(timeout=120)
        assert run.returncode == 1, err[-2000:]
        record = json.loads(out)
        assert record["status"] == "failed"
        assert record["message"].startswith(f"MongoDB store {uri} (database pullctl): ") or record[
            "message"
        ].startswith(f"cannot reach MongoDB at {uri}"), record["message"]

        server = _start(tmp_path / "nx.db", port)
        stored_before = len(_stored(uri))
        assert stored_before == record["counts"]["stored"]  # nothing claimed that is not there
        assert 0 < stored_before < ITEMS
        upstream.reset()
        rerun = subprocess.run(
            [sys.executable, "-m", "pullctl", "run", "slow", "--output", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        again = json.loads(rerun.stdout)
        assert again["counts"]["duplicates"] == stored_before
        docs = _stored(uri)
        assert len(docs) == ITEMS == len({d["content_hash"] for d in docs})
    finally:
        server.kill()
        server.wait(10)

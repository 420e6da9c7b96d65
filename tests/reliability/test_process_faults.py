"""Process faults: `kill -9` of a run mid-way, then a rerun; two runs of one source at once."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pullctl.pipeline.sqlite import SqliteStore
from tests.runkit import write_load_source
from tests.servers.upstream import Upstream

ITEMS = 60


def _config(folder: Path, upstream: Upstream) -> None:
    write_load_source(
        folder, upstream.url, ITEMS, source_id="slow", concurrency=2, hourly=True, deadline_seconds=60
    )


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PULLCTL_CONFIG": str(tmp_path / "cfg"),
        "PULLCTL_STORE": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "PULLCTL_LOG_FORMAT": "json",
    }


def _count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


def _stored_so_far(db: Path) -> int:
    """Documents stored by a run still starting up: 0 until its store has created the file and the table."""
    try:
        return _count(db, "SELECT COUNT(*) FROM raw_documents") if db.exists() else 0
    except sqlite3.OperationalError:  # the file exists, the schema not yet
        return 0


def test_kill_9_then_rerun_stores_everything_once(tmp_path: Path, upstream: Upstream) -> None:
    _config(tmp_path / "cfg", upstream)
    upstream.fail("/v1/forecast", "delay", delay=0.05)
    cmd = [sys.executable, "-m", "pullctl", "run", "slow"]
    proc = subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = tmp_path / "db.sqlite"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _stored_so_far(db) >= 10:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    stored_before = _count(db, "SELECT COUNT(*) FROM raw_documents")
    assert 10 <= stored_before < 60
    assert _count(db, "SELECT COUNT(*) FROM pull_runs WHERE status = 'running'") == 1

    rerun = subprocess.run(
        [*cmd, "--output", "json"], env=_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert rerun.returncode == 0, rerun.stderr
    assert _count(db, "SELECT COUNT(*) FROM raw_documents") == ITEMS
    assert _count(db, "SELECT COUNT(DISTINCT content_hash) FROM raw_documents") == ITEMS

    # the killed run's record is closed as failed by the first run after its deadline
    async def close() -> int:
        store = SqliteStore(db)
        await store.open()
        try:
            later = datetime.now(UTC) + timedelta(seconds=61)
            return await store.close_stale_runs("slow", later - timedelta(seconds=60), "killed")
        finally:
            await store.close()

    assert asyncio.run(close()) == 1
    assert _count(db, "SELECT COUNT(*) FROM pull_runs WHERE status = 'failed'") == 1


def test_two_runs_at_once_store_each_document_once(tmp_path: Path, upstream: Upstream) -> None:
    _config(tmp_path / "cfg", upstream)
    cmd = [sys.executable, "-m", "pullctl", "run", "slow", "--output", "json"]
    procs = [
        subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outs]
    db = tmp_path / "db.sqlite"
    assert _count(db, "SELECT COUNT(*) FROM raw_documents") == ITEMS
    import json

    records = [json.loads(o[0]) for o in outs]
    assert sum(r["counts"]["stored"] for r in records) == ITEMS
    assert sum(r["counts"]["duplicates"] for r in records) == ITEMS


def _open_at_once(path: Path, barrier: Any, results: Any) -> None:
    async def main() -> None:
        store = SqliteStore(path)
        barrier.wait()  # every process opens the brand-new file at the same moment
        try:
            await store.open()
            await store.close()
            results.put("ok")
        except Exception as exc:  # reported to the test, which names it
            results.put(f"{type(exc).__name__}: {exc}")

    asyncio.run(main())


def test_processes_opening_a_new_sqlite_file_at_once_all_get_it(tmp_path: Path) -> None:
    # Before: 'cannot open the SQLite store ...: database is locked' in about one round in three (the WAL switch
    # takes its lock without waiting on busy_timeout), which also made two concurrent runs flaky.
    import multiprocessing

    context = multiprocessing.get_context("fork")
    for round_ in range(5):
        path = tmp_path / f"new-{round_}.sqlite"
        barrier, results = context.Barrier(6), context.Queue()
        procs = [context.Process(target=_open_at_once, args=(path, barrier, results)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
        assert [results.get(timeout=5) for _ in procs] == ["ok"] * 6

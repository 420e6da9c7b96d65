"""Load (issue 8): 50,000 items at concurrency 100 against an upstream that answers 5 % of requests 503.

`pullctl run` runs as a process of its own, as in a pod; the upstream is the test upstream (a thread of
pytest's process, which only waits meanwhile). Every item must be stored exactly once, and the run record
must agree with what the upstream served. The peak RSS of the `pullctl run` process is printed (pytest
-s shows it), never asserted; `bench/load_bench.py` prints the figures at several item counts.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.runkit import run_process, write_load_source
from tests.servers.upstream import Upstream

ITEMS = 50_000
CONCURRENCY = 100
FAIL_RATE = 0.05


def _query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.timeout(600)
def test_50000_items_at_concurrency_100_with_5_percent_503s_are_each_stored_once(
    tmp_path: Path, upstream: Upstream
) -> None:
    write_load_source(tmp_path / "cfg", upstream.url, ITEMS, concurrency=CONCURRENCY)
    served_503 = upstream.fail("/v1/forecast", "status", status=503, fraction=FAIL_RATE)
    db = tmp_path / "store.db"
    env = {
        **os.environ,
        "PULLCTL_CONFIG": str(tmp_path / "cfg"),
        "PULLCTL_STORE": f"sqlite:///{db}",
        "PULLCTL_LOG_FORMAT": "json",
    }
    cmd = [sys.executable, "-m", "pullctl", "run", "load", "--output", "json"]
    run = run_process(cmd, env, tmp_path / "run", timeout=540, mark='"event": "run_started"')

    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads(run.stdout.splitlines()[-1])
    requests = upstream.hits["/v1/forecast"]
    print(
        f"\n{ITEMS} items at concurrency {CONCURRENCY}: {run.wall:.1f} s wall"
        f" ({record['duration_seconds']:.1f} s fetching, {ITEMS / record['duration_seconds']:.0f} items/s);"
        f" {requests} requests, {served_503.applied} answered 503;"
        f" peak RSS of pullctl run {run.peak_rss_mb or float('nan'):.1f} MB"
        f" ({run.peak_rss_at_mark_mb or float('nan'):.1f} MB of it reached by the run_started log line;"
        f" RSS then {run.rss_at_mark_mb or float('nan'):.1f} MB,"
        f" at most {max(run.rss_after_mark_mb, default=float('nan')):.1f} MB while fetching)"
    )

    # the fault was real: about 5 % of the requests were answered 503, and each of them was retried
    assert FAIL_RATE / 2 * requests < served_503.applied < FAIL_RATE * 2 * requests
    assert requests == ITEMS + served_503.applied
    assert record["status"] == "succeeded"
    assert record["errors"] == []
    assert record["counts"] == {
        "items": ITEMS,
        "fetched": ITEMS,
        "stored": ITEMS,
        "duplicates": 0,
        "failed": 0,
        "skipped": 0,
        "pages": ITEMS,
        "requests": requests,
        "retries": served_503.applied,
        "parent_requests": 0,
    }

    # every item stored exactly once
    [(rows, hashes, keys, runs)] = _query(
        db,
        "SELECT COUNT(*), COUNT(DISTINCT content_hash), COUNT(DISTINCT json_extract(linkage, '$.id')),"
        " COUNT(DISTINCT run_id) FROM raw_documents WHERE source_id = 'load'",
    )
    assert (rows, hashes, keys, runs) == (ITEMS, ITEMS, ITEMS, 1)
    assert _query(db, "SELECT _id, status FROM pull_runs") == [(record["run_id"], "succeeded")]

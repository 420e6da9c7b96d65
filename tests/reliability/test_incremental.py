"""Incremental state never skips data (issue 16, SOURCES.md §7): the reliability table.

Each test names the data loss it prevents. The upstream is the loopback change feed (``Upstream.feed``,
tests/servers/upstream.py, block "incremental (issue 16)"): accounts whose records change between runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from pullctl.config.loader import load_paths
from pullctl.pipeline.sqlite import SqliteStore
from pullctl.run.runner import RunOptions, run_source
from pullctl.run.service import run_pulls
from pullctl.settings import Settings
from tests.conftest import Cli
from tests.runkit import Runner, write_source
from tests.servers.upstream import FEED_START, Upstream

T0 = FEED_START
QUICK_RETRY = {"max_attempts": 2, "initial_delay_seconds": 0.01, "max_delay_seconds": 0.02}


def per_account(runner: Runner, upstream: Upstream, accounts: list[str], **extra: Any) -> None:
    """One item per account, each with its own cursor (per_item, the default when iterating)."""
    ingestion: dict[str, Any] = {
        "request": {
            "base_url": f"{upstream.url}/inc/{{account.id}}/records",
            "parameters": {"updated_since": "{incremental.start}", "limit": 10},
        },
        "iteration": {"foreach": "account", "items": [{"id": a} for a in accounts], "key": "id"},
        "records": {"path": "data", "split": True},
        "pagination": {"type": "offset", "limit": 10},
        "incremental": {"cursor_path": "updated_at"},
        "retry": QUICK_RETRY,
    }
    for key, value in extra.items():
        if key in ("request", "iteration") and isinstance(value, dict):
            ingestion[key] = {**ingestion[key], **value}
        else:
            ingestion[key] = value
    write_source(runner.config, "feed", **ingestion)


def states(db: Path) -> dict[str | None, Any]:
    if not db.exists():
        return {}
    with sqlite3.connect(db) as conn:
        return {
            item: json.loads(value) for item, value in conn.execute("SELECT item, value FROM source_state")
        }


def stored_versions(db: Path) -> set[tuple[str, int]]:
    """(record id, version) of every stored record document."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT content FROM raw_documents").fetchall()
    return {(d["id"], d["version"]) for d in (json.loads(r[0]) for r in rows)}


def current_versions(upstream: Upstream) -> set[tuple[str, int]]:
    return {(r["id"], r["version"]) for recs in upstream.feed.accounts.values() for r in recs.values()}


def newest(upstream: Upstream) -> dict[str | None, Any]:
    return {a: upstream.feed.newest(a) for a in upstream.feed.accounts}


# -- kill -9 mid-run ----------------------------------------------------------------------------------


def test_kill_9_mid_run_leaves_the_state_and_the_rerun_fetches_everything(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    # Prevents: a state saved by a run that was then killed (the killed run's items would never be
    # fetched again).
    runner = Runner(cli, tmp_path)
    accounts = [f"a{n:02d}" for n in range(40)]
    for account in accounts:
        upstream.feed.add(account, 12)
    per_account(runner, upstream, accounts, iteration={"concurrency": 2})
    upstream.fail("*", "delay", delay=0.05)
    env = {**os.environ, **runner.env}
    cmd = [sys.executable, "-m", "pullctl", "run", "feed"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.OperationalError):  # the file is there before its tables
            if runner.db.exists() and len(stored_versions(runner.db)) >= 30:
                break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert 30 <= len(stored_versions(runner.db)) < 480
    assert states(runner.db) == {}  # nothing committed by a run that did not finish

    upstream.reset()
    upstream.feed.touch("a00", ["a00-r1"])  # a change while the run was down
    rerun = subprocess.run([*cmd, "--output", "json"], env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert current_versions(upstream) <= stored_versions(runner.db)  # nothing skipped
    assert states(runner.db) == newest(upstream)


# -- one item fails ---------------------------------------------------------------------------------


def test_an_item_that_fails_keeps_its_own_state_while_the_others_advance(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    # Prevents: a cursor advanced past an item whose pages failed.
    runner = Runner(cli, tmp_path)
    for account in ("acme", "beta", "gamma"):
        upstream.feed.add(account, 5)
    per_account(runner, upstream, ["acme", "beta", "gamma"])
    assert runner.run_json("feed")[0] == 0
    before = states(runner.db)

    for account in ("acme", "beta", "gamma"):
        upstream.feed.touch(account, [f"{account}-r1", f"{account}-r2"])
    upstream.feed.fail_accounts = {"beta"}
    code, records, _ = runner.run_json("feed")
    assert code == 3 and records[0]["failed_items"] == ["beta"]
    after = states(runner.db)
    assert after["acme"] == upstream.feed.newest("acme") and after["gamma"] == upstream.feed.newest("gamma")
    assert after["beta"] == before["beta"]  # only the failed item's state stays

    upstream.feed.fail_accounts = set()
    assert runner.run_json("feed")[0] == 0
    assert current_versions(upstream) <= stored_versions(runner.db)  # beta's changes: fetched from its mark
    assert states(runner.db) == newest(upstream)


# -- records out of order ---------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["desc", "shuffled"])
def test_records_out_of_order_the_mark_is_the_highest_seen(
    cli: Cli, tmp_path: Path, upstream: Upstream, order: str
) -> None:
    # Prevents: a mark taken from the last record (newest-first or unsorted APIs), which would move
    # backwards or skip.
    runner = Runner(cli, tmp_path)
    upstream.feed.add("acme", 35)
    per_account(runner, upstream, ["acme"], request={"parameters": {"limit": 10, "order": order}})
    assert runner.run_json("feed")[0] == 0
    assert states(runner.db) == {"acme": upstream.feed.newest("acme")}


def test_a_newest_first_api_failing_on_page_2_leaves_the_mark_and_the_rerun_gets_the_older_pages(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    # Prevents: a newest-first API whose cursor, taken from page 1, skips the older pages after an error.
    runner = Runner(cli, tmp_path)
    upstream.feed.add("acme", 30)
    per_account(runner, upstream, ["acme"], request={"parameters": {"limit": 10, "order": "desc"}})
    upstream.fail("/inc/acme/records", "status", status=500, query={"offset": "10"})
    code, records, _ = runner.run_json("feed")
    assert code == 1 and records[0]["counts"]["stored"] == 10  # page 1 is stored, the item failed
    assert states(runner.db) == {}
    upstream.reset()
    assert runner.run_json("feed")[0] == 0
    assert current_versions(upstream) <= stored_versions(runner.db)
    assert states(runner.db) == {"acme": upstream.feed.newest("acme")}


# -- many records on one timestamp ------------------------------------------------------------------


def test_250_records_sharing_one_timestamp_across_pages_none_lost_no_endless_loop(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    # Prevents: a cursor pinned forever, or records lost, when more records than a page share one
    # timestamp: the cursor is sent as >= (updated_since), so the records at the mark come again and
    # dedup absorbs them; offset pages walk the tie; the server caps pages at 100 whatever limit asks.
    runner = Runner(cli, tmp_path)
    tie = T0 + timedelta(hours=1)
    upstream.feed.add("acme", 250, at=tie)
    per_account(
        runner,
        upstream,
        ["acme"],
        request={"parameters": {"limit": 500}},
        pagination={"type": "offset", "limit": 500},
    )
    code, records, _ = runner.run_json("feed")
    assert code == 0 and records[0]["counts"]["stored"] == 250
    assert records[0]["counts"]["requests"] == 3  # 100, 100, 50 (a page-size-capped server)
    mark = states(runner.db)["acme"]
    assert mark == "2026-01-01T01:00:00Z"

    code, records, _ = runner.run_json("feed")  # the next run: the same 250 again, as duplicates; it ends
    assert code == 0 and records[0]["counts"]["duplicates"] == 250 and records[0]["counts"]["stored"] == 0
    upstream.feed.add("acme", 1, at=tie + timedelta(seconds=1), prefix="late")
    code, records, _ = runner.run_json("feed")
    assert code == 0 and records[0]["counts"]["stored"] == 1
    assert states(runner.db)["acme"] == "2026-01-01T01:00:01Z"
    assert len(stored_versions(runner.db)) == 251


def test_keyset_paging_on_the_timestamp_alone_fails_the_item_instead_of_looping_or_skipping(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    # Prevents: an endless loop (or, with '>', a skip of the tie's other records) when a client pages by
    # its last record's timestamp over a tie longer than a page: the repeated page fails the item, the
    # state stays, and the message says why.
    runner = Runner(cli, tmp_path)
    upstream.feed.add("acme", 250, at=T0)
    per_account(
        runner,
        upstream,
        ["acme"],
        request={"base_url": f"{upstream.url}/inc/{{account.id}}/keyset", "parameters": {"limit": 100}},
        pagination={
            "type": "cursor",
            "cursor_from": "last_record",
            "cursor_path": "updated_at",
            "cursor_param": "updated_since",
        },
    )
    code, records, _ = runner.run_json("feed")
    assert code == 1
    assert "pagination loop" in records[0]["errors"][0]["message"]
    assert states(runner.db) == {}


# -- an expired sync token ----------------------------------------------------------------------------


def token_source(runner: Runner, upstream: Upstream) -> None:
    """Asana-like: the first request (no token) and an expired token get 412 with a fresh token."""
    write_source(
        runner.config,
        "events",
        request={
            "base_url": f"{upstream.url}/inc/acme/events",
            "parameters": {"sync": "{incremental.start}", "limit": 10},
        },
        records={"path": "data", "split": True},
        pagination={
            "type": "cursor",
            "cursor_param": "sync",
            "cursor_path": "sync",
            "has_more_path": "has_more",
        },
        response_actions=[{"status": 412, "action": "end"}],
        incremental={"token_path": "sync"},
        retry=QUICK_RETRY,
    )


def test_an_expired_sync_token_starts_over_from_initial_value_with_a_warning(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    # Prevents: a source stuck on a token the API expired (every run failing), or one that goes on from
    # the expired token silently: it starts over as the API documents, and says so.
    runner = Runner(cli, tmp_path)
    upstream.feed.add("acme", 3)
    token_source(runner, upstream)
    code, records, _ = runner.run_json("events")  # no token yet: the 412 hands out the first one
    assert code == 0 and records[0]["counts"]["stored"] == 0
    first = states(runner.db)[None]

    upstream.feed.touch("acme", ["acme-r1", "acme-r2"])
    code, records, _ = runner.run_json("events")
    assert code == 0 and records[0]["counts"]["stored"] == 2
    assert upstream.requests[-1].query["sync"] == first
    second = states(runner.db)[None]
    assert second != first

    upstream.feed.expire()
    upstream.feed.touch("acme", ["acme-r3"])
    code, records, stderr = runner.run_json("events")
    assert code == 0
    warning = [e["message"] for e in records[0]["errors"]]
    assert warning == [
        "warning: the API expired the stored state (HTTP 412): the item starts over from initial_value"
        " (absent: left out); see the API's documentation on a full sync"
    ]
    assert '"event":"state_expired"' in stderr.replace(" ", "")
    assert [r.query.get("sync") for r in upstream.requests[-2:]] == [second, None]  # then from the start
    third = states(runner.db)[None]
    assert third not in (first, second)
    code, records, _ = runner.run_json("events")  # the fresh token works
    assert code == 0 and records[0]["errors"] == [] and upstream.requests[-1].query["sync"] == third


# -- two runs at once ---------------------------------------------------------------------------------


class _Held(httpx.AsyncBaseTransport):
    """Real HTTP to the upstream; the responses wait for ``release`` (a run held mid-way)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.release = asyncio.Event()
        self.answered = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        self.answered.set()
        await self.release.wait()
        return httpx.Response(response.status_code, headers=response.headers, content=body)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "store.db")
    await store.open()
    yield store
    await store.close()


@pytest.mark.anyio
async def test_two_runs_at_once_end_at_the_higher_mark(
    tmp_path: Path, upstream: Upstream, sqlite_store: SqliteStore
) -> None:
    # Prevents: a slower run that saw less overwriting the mark of a faster run that saw more (the state
    # would move backwards, and the next run re-fetch, or with a '>' API, skip nothing but loop).
    folder = tmp_path / "configs"
    upstream.feed.add("acme", 5)
    write_source(
        folder,
        "feed",
        request={
            "base_url": f"{upstream.url}/inc/acme/records",
            "parameters": {"updated_since": "{incremental.start}"},
        },
        records={"path": "data", "split": True},
        incremental={"cursor_path": "updated_at"},
    )
    loaded = load_paths([folder]).get("feed")
    settings = Settings.from_env({"PULLCTL_CONFIG": str(folder)})
    held = _Held()
    slow = asyncio.create_task(run_source(loaded, settings, sqlite_store, transport=held))
    await held.answered.wait()  # the slow run has its answer: records up to the fifth
    seen_by_slow = upstream.feed.newest("acme")
    upstream.feed.add("acme", 3)
    fast = await run_source(loaded, settings, sqlite_store, options=RunOptions())
    assert fast.status == "succeeded"
    higher = upstream.feed.newest("acme")
    assert (await sqlite_store.get_state("feed")).value == higher  # type: ignore[union-attr]
    held.release.set()
    try:
        assert (await slow).status == "succeeded"
    finally:
        await held.aclose()
    assert seen_by_slow < higher
    assert (await sqlite_store.get_state("feed")).value == higher  # type: ignore[union-attr]


# -- since: last_success ------------------------------------------------------------------------------


def window_source(folder: Path, upstream: Upstream, **window: Any) -> None:
    write_source(
        folder,
        "hourly",
        schedule="0 * * * *",
        request={
            "base_url": f"{upstream.url}/inc/acme/records",
            "parameters": {
                "updated_since": "{window.start:%Y-%m-%dT%H:%M:%SZ}",
                "updated_before": "{window.end:%Y-%m-%dT%H:%M:%SZ}",
            },
        },
        records={"path": "data", "split": True},
        window={"since": "last_success", "initial": T0.isoformat(), "step": "1h", **window},
        retry={"max_attempts": 1},
    )


def hourly_records(upstream: Upstream, hours: int) -> None:
    for hour in range(hours):
        upstream.feed.add("acme", 1, at=T0 + timedelta(hours=hour, minutes=10), prefix=f"h{hour}-")


async def scheduled(folder: Path, store: SqliteStore, hours: float) -> list[Any]:
    settings = Settings.from_env({"PULLCTL_CONFIG": str(folder)})
    now = T0 + timedelta(hours=hours)
    return await run_pulls(settings, "hourly", RunOptions(trigger="schedule"), store=store, now=now)


def windows_of(records: list[Any]) -> list[tuple[float, float, str]]:
    def hours(text: str) -> float:
        from datetime import datetime

        return (datetime.fromisoformat(text) - T0).total_seconds() / 3600

    return [(hours(r.window["start"]), hours(r.window["end"]), r.status) for r in records]


@pytest.mark.anyio
async def test_a_missed_schedule_is_caught_up_by_the_next_run_bounded_by_max_span(
    tmp_path: Path, upstream: Upstream, sqlite_store: SqliteStore
) -> None:
    # Prevents: the intervals of missed ticks (the scheduler was down) being lost until a manual backfill.
    folder = tmp_path / "configs"
    hourly_records(upstream, 6)
    window_source(folder, upstream, max_span="3h")
    first = await scheduled(folder, sqlite_store, 5.5)  # five ticks since initial: at most 3h per run
    assert windows_of(first) == [(0, 1, "succeeded"), (1, 2, "succeeded"), (2, 3, "succeeded")]
    assert (await sqlite_store.get_state("hourly", "@window")).value == (T0 + timedelta(hours=3)).isoformat()  # type: ignore[union-attr]
    second = await scheduled(folder, sqlite_store, 5.5)  # the rest up to the latest tick (05:00)
    assert windows_of(second) == [(3, 4, "succeeded"), (4, 5, "succeeded")]
    assert await scheduled(folder, sqlite_store, 5.9) == []  # up to date until the next tick
    assert sum(r.counts["stored"] for r in first + second) == 5  # the records of hours 0..4, each once


@pytest.mark.anyio
async def test_last_success_after_a_failed_window_the_next_run_covers_the_gap(
    tmp_path: Path, upstream: Upstream, sqlite_store: SqliteStore
) -> None:
    # Prevents: a failed run's interval lost (today's tick rule covers only the latest interval).
    folder = tmp_path / "configs"
    hourly_records(upstream, 4)
    window_source(folder, upstream)
    upstream.fail("/inc/acme/records", "status", status=503, query={"updated_since": "2026-01-01T01:00:00Z"})
    first = await scheduled(folder, sqlite_store, 3)
    # one run record per step window, and the run stops at the first failed one
    assert windows_of(first) == [(0, 1, "succeeded"), (1, 2, "failed")]
    assert (await sqlite_store.get_state("hourly", "@window")).value == (T0 + timedelta(hours=1)).isoformat()  # type: ignore[union-attr]
    upstream.reset()
    second = await scheduled(folder, sqlite_store, 4)
    assert windows_of(second) == [(1, 2, "succeeded"), (2, 3, "succeeded"), (3, 4, "succeeded")]
    assert sum(r.counts["stored"] for r in first + second) == 4

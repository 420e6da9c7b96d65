"""`pullctl status`: the library on SQLite and MongoDB, the CLI's table, JSON and `--fail-on`."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pymongo import MongoClient

from pullctl.cli import flags
from pullctl.config.loader import LoadedSource, load_text
from pullctl.errors import UsageError
from pullctl.pipeline.documents import RunRecord, document_id
from pullctl.pipeline.state import StateRecord
from pullctl.pipeline.status import source_status
from pullctl.pipeline.store import Store
from tests.conftest import Cli
from tests.stores import StoreTarget, anyio_backend, mongo_database, mongo_uri, store, store_target, stores
from tests.test_store_contract import doc

__all__ = ["anyio_backend", "mongo_database", "mongo_uri", "store", "store_target", "stores"]

NOW = datetime(2026, 3, 5, 7, 30, tzinfo=UTC)
CONFIGS = """\
sources:
  - source_id: weather-api
    ingestion:
      schedule: "0 6 * * *"
      request: {base_url: "https://api.example.com/v1/forecast"}
  - source_id: soil-api
    ingestion:
      schedule: "0 * * * *"
      request: {base_url: "https://api.example.com/v1/soil"}
  - source_id: manual-api
    ingestion:
      request: {base_url: "https://api.example.com/v1/manual"}
  - source_id: paused-api
    enabled: false
    ingestion:
      schedule: "0 6 * * *"
      request: {base_url: "https://api.example.com/v1/paused"}
"""


def _sources() -> list[LoadedSource]:
    result = load_text(CONFIGS, "cfg/sources.yaml", target="dapr")
    assert not result.errors
    return result.sources


def _run(
    run_id: str, source_id: str, started: datetime, status: str, failed: list[str] | None = None
) -> RunRecord:
    record = RunRecord(
        run_id, source_id, "schedule", {"start": "", "end": ""}, started_at=started, status=status
    )
    record.finished_at = started + timedelta(minutes=2) if status != "running" else None
    record.failed_items = failed or []
    return record


async def _fill(store: Store, now: datetime = NOW) -> None:
    """Runs relative to ``now``'s latest 06:00 and latest full hour (the ticks of weather-api and soil-api)."""
    day = timedelta(days=1)
    hour = now.replace(minute=0, second=0, microsecond=0)
    six = hour.replace(hour=6) if hour.hour >= 6 else hour.replace(hour=6) - day
    # weather-api: succeeded three days ago, then failed twice; r2 and r3 wait for a replay
    await store.save_run(_run("w-1", "weather-api", six - 3 * day, "succeeded"))
    await store.save_run(_run("w-2", "weather-api", six - 2 * day, "failed"))
    await store.save_run(_run("w-3", "weather-api", six - day, "partial", ["r2", "r3"]))
    await store.save_run(_run("w-4", "weather-api", six, "running"))
    # soil-api: succeeded at 07:00, on time
    await store.save_run(_run("s-1", "soil-api", hour, "succeeded"))
    # soil-api keeps an incremental cursor two days behind ``now``, and a token written an hour ago
    mark = (now - 2 * day).isoformat()
    await store.swap_state(StateRecord("soil-api", "r1", mark, "s-1", hour, 1))
    await store.swap_state(StateRecord("soil-api", "r2", "opaque-token", "s-1", now - timedelta(hours=1), 1))
    pending = doc("p", "soil-api")
    await store.insert_documents([pending, doc("q", "soil-api")])
    await store.mark_events([document_id("soil-api", "q")], "sent")


@pytest.mark.anyio
async def test_status_rows_from_the_store(store: Store) -> None:
    await _fill(store)
    rows = {r.source_id: r for r in await source_status(_sources(), store, NOW)}
    assert list(rows) == ["manual-api", "paused-api", "soil-api", "weather-api"]

    weather = rows["weather-api"]
    assert weather.last_run is not None and (weather.last_run.run_id, weather.last_run.status) == (
        "w-4",
        "running",
    )
    assert weather.last_finished is not None and weather.last_finished.run_id == "w-3"
    assert weather.last_success is not None and weather.last_success.run_id == "w-1"
    assert weather.intervals_behind == 3  # the 06:00 ticks of 03-03, 03-04 and 03-05
    assert weather.failed_items == 2
    assert weather.next_run == datetime(2026, 3, 6, 6, 0, tzinfo=UTC)
    assert weather.state_lag_seconds is None  # it keeps no incremental state

    soil = rows["soil-api"]
    assert (soil.intervals_behind, soil.failed_items, soil.pending_events) == (0, 0, 1)
    assert soil.state_lag_seconds == 2 * 86400.0  # the furthest-behind state: the cursor
    assert soil.next_run == datetime(2026, 3, 5, 8, 0, tzinfo=UTC)

    assert rows["manual-api"].last_run is None and rows["manual-api"].next_run is None
    assert rows["paused-api"].next_run is None and not rows["paused-api"].scheduled

    rules = flags.fail_on("stale=2,failed")
    assert weather.problems(rules) == [
        "stale: 3 intervals behind (more than 2)"
    ]  # its last finished: partial
    assert weather.problems(flags.fail_on("partial")) == ["partial: last run w-3 was partial"]
    assert soil.problems(rules) == []
    assert rows["manual-api"].problems(rules) == []  # no schedule: never stale
    assert rows["paused-api"].problems(rules) == []  # disabled: never stale


@pytest.mark.anyio
async def test_a_scheduled_source_that_never_succeeded_is_stale(store: Store) -> None:
    await store.save_run(_run("w-1", "weather-api", NOW - timedelta(hours=1), "failed"))
    [_, _, soil, weather] = await source_status(_sources(), store, NOW)
    assert weather.intervals_behind is None
    assert weather.problems(flags.fail_on("stale=2,failed")) == [
        "stale: never succeeded",
        "failed: last run w-1 failed",
    ]
    assert soil.problems(flags.fail_on("stale=0")) == ["stale: never succeeded"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stale=x", "--fail-on 'stale=x': stale takes a whole number of intervals, e.g. stale=2"),
        ("stale", "--fail-on 'stale': use stale=N, failed or partial, comma-separated"),
        ("failed=1", "--fail-on 'failed=1': use stale=N, failed or partial, comma-separated"),
        ("late", "--fail-on 'late': use stale=N, failed or partial, comma-separated"),
    ],
)
def test_fail_on_is_checked(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        flags.fail_on(text)
    assert caught.value.message == message


# -- the CLI -------------------------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "sources.yaml").write_text(CONFIGS)
    return tmp_path


async def _fill_url(url: str, database: str) -> None:
    from pullctl.pipeline.store import store_at

    writer = store_at(url, database)
    await writer.open()
    try:
        await _fill(writer, datetime.now(UTC))
    finally:
        await writer.close()


def _env(folder: Path, url: str, database: str = "pullctl") -> dict[str, str]:
    return {
        "PULLCTL_CONFIG": str(folder / "cfg"),
        "PULLCTL_STORE": url,
        "PULLCTL_MONGODB_DATABASE": database,
        "PULLCTL_LOG_FORMAT": "text",
    }


def test_status_cli_json_and_fail_on(cli: Cli, folder: Path, store_target: StoreTarget) -> None:
    """On SQLite and on MongoDB (``store_target``: a database of its own, dropped after)."""
    asyncio.run(_fill_url(store_target.url, store_target.database))
    env = _env(folder, store_target.url, store_target.database)
    try:
        result = cli("status", "--output", "json", env=env)
        assert result.exit_code == 0, result.stderr
        rows = {r["source_id"]: r for r in json.loads(result.stdout)}
        assert rows["weather-api"]["last_run"]["run_id"] == "w-4"
        assert rows["weather-api"]["last_success"]["run_id"] == "w-1"
        assert rows["weather-api"]["failed_items"] == 2
        assert rows["weather-api"]["state_lag_seconds"] is None
        assert rows["soil-api"]["pending_events"] == 1
        assert rows["weather-api"]["problems"] == []

        failing = cli("status", "--fail-on", "stale=2,failed", env=env)
        assert failing.exit_code == 1
        assert failing.stderr == "error: weather-api: stale: 3 intervals behind (more than 2)\n"
        assert cli("status", "--fail-on", "stale=3", env=env).exit_code == 0
    finally:
        if store_target.kind == "mongodb":
            client: MongoClient[dict[str, object]] = MongoClient(store_target.url)
            client.drop_database(store_target.database)
            client.close()


# -- tables fit the terminal (issue 18, fix 6) ----------------------------------------------------------------

LONG_ID = "plantation-weather-region"  # 25 characters: with a run id, what has to fit on 80 columns


def _long_folder(folder: Path) -> None:
    text = CONFIGS.replace("weather-api", LONG_ID).replace('"0 * * * *"', '"*/5 1-23 * * 1-5"')
    (folder / "cfg" / "sources.yaml").write_text(text)


@pytest.mark.parametrize("width", [80, 200])
def test_status_table_fits_and_never_cuts_an_id(cli: Cli, folder: Path, width: int) -> None:
    _long_folder(folder)
    db = folder / "s.db"
    now = datetime.now(UTC)
    run_id = "20260305T060000Z-abc123"

    async def fill() -> None:
        from pullctl.pipeline.store import store_at

        writer = store_at(f"sqlite:///{db}")
        await writer.open()
        await writer.save_run(_run(run_id, LONG_ID, now - timedelta(days=3), "partial", ["r1"]))
        await writer.close()

    asyncio.run(fill())
    result = cli("status", env={**_env(folder, f"sqlite:///{db}"), "COLUMNS": str(width)})
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line) <= width for line in lines), "\n".join(lines)
    headers = lines[0].split("  ")
    [row] = [line for line in lines if line.startswith(LONG_ID)]
    assert run_id in row and "partial" in row  # whole, on one line
    if width == 80:
        assert "STATE LAG" not in lines[0] and "NEXT RUN (UTC)" not in lines[0]  # dropped first
        assert [h.strip() for h in headers if h.strip()][:4] == ["SOURCE", "LAST RUN", "STATUS", "BEHIND"]
    else:
        assert "STATE LAG" in lines[0] and "NEXT RUN (UTC)" in lines[0] and "…" not in result.stdout


def test_runs_table_at_80_columns_keeps_run_and_source_ids(cli: Cli, folder: Path) -> None:
    db = folder / "s.db"

    async def fill() -> None:
        from pullctl.pipeline.store import store_at

        writer = store_at(f"sqlite:///{db}")
        await writer.open()
        await writer.save_run(_run("20260305T060000Z-abc123", LONG_ID, NOW, "succeeded"))
        await writer.close()

    asyncio.run(fill())
    env = {**_env(folder, f"sqlite:///{db}"), "COLUMNS": "80"}
    lines = cli("runs", env=env).stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert lines[1].split()[:3] == ["20260305T060000Z-abc123", LONG_ID, "succeeded"]
    wide = cli("runs", env={**env, "COLUMNS": "200"}).stdout.splitlines()
    assert wide[0].split() == [
        "RUN",
        "SOURCE",
        "TRIGGER",
        "STATUS",
        "STARTED",
        "(UTC)",
        "SECONDS",
        "ITEMS",
        "FAILED",
        "STORED",
        "DUP",
        "STATE",
    ]


def test_fit_drops_then_shortens_but_never_cuts_a_whole_column() -> None:
    from pullctl.cli.output import Column, fit

    columns = [Column("ID", whole=True), Column("NOTE"), Column("EXTRA", drop=1)]
    rows = [["a-very-long-identifier", "a note that is long", "x"]]
    assert fit(columns, rows, 80) == [
        "ID                      NOTE                 EXTRA",
        "a-very-long-identifier  a note that is long  x",
    ]
    assert fit(columns, rows, 40) == [
        "ID                      NOTE",
        "a-very-long-identifier  a note that is …",
    ]
    assert fit(columns, rows, 10) == ["ID                      NOTE", "a-very-long-identifier  a n…"]

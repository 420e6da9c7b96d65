"""Incremental pulls (issue 16, SOURCES.md §7): the state logic, templates, the state commands, and runs of
cursor and token sources against the loopback upstream's change feed (tests/servers/upstream.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pullctl.config import templates
from pullctl.config.schedule import catch_up
from pullctl.pipeline.state import StateRecord
from pullctl.pipeline.store import Store
from pullctl.run import incremental
from tests.conftest import Cli
from tests.runkit import Runner, write_source
from tests.servers.upstream import FEED_START, Upstream
from tests.stores import Stores, StoreTarget

T0 = FEED_START


def cursor_source(runner: Runner, upstream: Upstream, **extra: Any) -> None:
    """One account's records, ``updated_since`` the cursor (>=), offset pages of 10."""
    ingestion: dict[str, Any] = {
        "request": {
            "base_url": f"{upstream.url}/inc/acme/records",
            "parameters": {"updated_since": "{incremental.start}", "limit": 10},
        },
        "records": {"path": "data", "split": True},
        "pagination": {"type": "offset", "limit": 10},
        "incremental": {"cursor_path": "updated_at"},
        "retry": {"max_attempts": 1},
    }
    ingestion.update(extra)
    write_source(runner.config, "feed", **ingestion)


def states(runner: Runner, source: str = "feed") -> dict[str | None, Any]:
    result = runner("state", "list", source, "--output", "json")
    assert result.exit_code == 0, result.stderr
    return {s["item"]: s["value"] for s in json.loads(result.stdout)}


# -- the pure part ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (10, 9, 1),
        (9, 10.5, -1),  # numbers as numbers, not as text ("9" > "10.5")
        ("2026-01-02T00:00:00Z", "2026-01-01T23:00:00-02:00", -1),  # instants, not text
        ("2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00Z", 0),
        ("b", "a", 1),
        ("10", "9", -1),  # text that is no instant compares as text
    ],
)
def test_compare_numbers_instants_then_text(a: Any, b: Any, expected: int) -> None:
    assert incremental.compare(a, b) == expected


def test_catch_up_windows_from_the_mark_to_the_tick() -> None:
    tick = T0 + timedelta(days=10)
    # first run: from initial, in steps, the last one shorter
    first = catch_up(None, T0, tick, step=timedelta(days=4))
    assert [(s - T0).days for s, _ in first] == [0, 4, 8] and first[-1][1] == tick
    # after a success at day 9: lookback 1h before it, lag 2m before the tick
    again = catch_up(T0 + timedelta(days=9), T0, tick, lookback=timedelta(hours=1), lag=timedelta(minutes=2))
    assert again == [(T0 + timedelta(days=9, hours=-1), tick - timedelta(minutes=2))]
    # max_span bounds one run; the rest is the next run's
    bounded = catch_up(None, T0, tick, step=timedelta(days=1), max_span=timedelta(days=3))
    assert len(bounded) == 3 and bounded[-1][1] == T0 + timedelta(days=3)
    assert catch_up(tick, T0, tick) == []  # nothing yet


def test_incremental_start_formats_and_absent_values() -> None:
    context = {"incremental": {"start": "2026-01-02T03:04:05Z"}}
    render = lambda text: templates.parse(text).render(context)  # noqa: E731
    assert render("{incremental.start:epoch}") == str(
        int(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp())
    )
    assert render("{incremental.start:epoch_ms}") == render("{incremental.start:epoch}") + "000"
    assert render("{incremental.start:%Y-%m-%d}") == "2026-01-02"
    assert templates.parse("{incremental.start:epoch}").render({"incremental": {"start": 1700000000}}) == (
        "1700000000"
    )
    absent = {"incremental": {"start": None}}
    assert templates.is_absent("{incremental.start}", absent)
    assert not templates.is_absent("since {incremental.start}", absent)  # not the whole value
    body = {"filter": {"since": "{incremental.start}", "kind": "x"}, "q": "a"}
    assert templates.render_value(body, absent, omit_absent=True) == {"filter": {"kind": "x"}, "q": "a"}
    with pytest.raises(ValueError, match=r"\{incremental.start:epoch\}: 'soon' is not an instant"):
        templates.parse("{incremental.start:epoch}").render({"incremental": {"start": "soon"}})


class _Racing:
    """A store whose first swap loses: another writer's value lands between this writer's read and swap."""

    def __init__(self, store: Store, other: Store, value: Any) -> None:
        self.store, self.other, self.value, self.raced = store, other, value, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def swap_state(self, record: StateRecord) -> bool:
        if not self.raced:
            self.raced = True
            await incremental.set_state(self.other, record.source_id, record.item, self.value)
        return await self.store.swap_state(record)


@pytest.mark.anyio
async def test_advance_after_a_lost_race_keeps_the_higher_mark(stores: Stores) -> None:
    first, second = await stores.open(), await stores.open()
    await incremental.set_state(first, "feed", "a", "2026-01-05T00:00:00Z")
    # the other writer moves it to day 9 while this one (day 7) is between its read and its swap
    racing = _Racing(first, second, "2026-01-09T00:00:00Z")
    outcome = await incremental.advance(racing, "feed", "a", "2026-01-07T00:00:00Z", "r1", kind="cursor")
    assert not outcome.moved and racing.raced
    assert (await first.get_state("feed", "a")).value == "2026-01-09T00:00:00Z"  # type: ignore[union-attr]
    # a higher mark after a lost race moves it
    racing = _Racing(first, second, "2026-01-10T00:00:00Z")
    outcome = await incremental.advance(racing, "feed", "a", "2026-01-11T00:00:00Z", "r2", kind="cursor")
    assert outcome.moved
    stored = await first.get_state("feed", "a")
    assert stored is not None and stored.value == "2026-01-11T00:00:00Z" and stored.run_id == "r2"
    # a token replaces only the version its run started from
    await incremental.set_state(first, "feed", None, "tok-1")
    kept = await incremental.advance(first, "feed", None, "tok-2", "r3", kind="token", started_from=0)
    assert not kept.moved and (await first.get_state("feed")).value == "tok-1"  # type: ignore[union-attr]


# -- runs ------------------------------------------------------------------------------------------------


def test_cursor_source_first_run_then_only_what_changed(cli: Cli, tmp_path: Path, upstream: Upstream) -> None:
    runner = Runner(cli, tmp_path)
    ids = upstream.feed.add("acme", 25)
    cursor_source(runner, upstream)
    code, records, _ = runner.run_json("feed")
    assert code == 0 and records[0]["counts"]["stored"] == 25
    first_mark = states(runner)[None]
    assert first_mark == upstream.feed.newest("acme")
    assert upstream.requests[0].query.get("updated_since") is None  # no state, no initial_value: left out

    upstream.feed.touch("acme", ids[:2])
    code, records, _ = runner.run_json("feed")
    assert code == 0
    assert upstream.requests[-1].query["updated_since"] == first_mark
    # the two changed records, and the one at the old mark again (>=), which dedup absorbs
    assert records[0]["counts"]["stored"] == 2 and records[0]["counts"]["duplicates"] == 1
    assert states(runner)[None] == upstream.feed.newest("acme")


def test_a_record_without_the_cursor_field_fails_the_item_naming_it(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    runner = Runner(cli, tmp_path)
    upstream.feed.add("acme", 3)
    cursor_source(runner, upstream, incremental={"cursor_path": "modified_at"})
    code, records, _ = runner.run_json("feed")
    assert code == 1
    assert records[0]["errors"][0]["message"] == (
        "record 0 of page 1 has no 'modified_at' (an object with keys id, account, updated_at, version):"
        " incremental.cursor_path must be in every record"
    )
    assert states(runner) == {}


def test_a_page_that_is_no_list_of_records_fails_a_cursor_item(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    runner = Runner(cli, tmp_path)
    upstream.feed.add("acme", 3)
    cursor_source(runner, upstream, records={}, pagination={"type": "none"})  # the page is an object
    code, records, _ = runner.run_json("feed")
    assert code == 1
    assert records[0]["errors"][0]["message"] == (
        "incremental.cursor_path reads each record, but page 1 is an object with keys data, offset, not a list"
        " of records: set records.path"
    )


def test_a_token_path_in_no_page_fails_the_item_naming_it(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    runner = Runner(cli, tmp_path)
    upstream.feed.add("acme", 3)
    cursor_source(runner, upstream, incremental={"token_path": "next_sync"})
    code, records, _ = runner.run_json("feed")
    assert code == 1
    assert records[0]["errors"][0]["message"] == (
        "incremental.token_path 'next_sync' is in none of the item's 2 page(s) (the last is an object with keys"
        " data, offset): the sync token cannot be kept"
    )


def test_initial_value_is_sent_until_there_is_a_state_in_the_format_asked(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    runner = Runner(cli, tmp_path)
    upstream.feed.add("acme", 3)
    cursor_source(
        runner,
        upstream,
        request={
            "base_url": f"{upstream.url}/inc/acme/records",
            "parameters": {"updated_since": "{incremental.start:epoch}"},
            "headers": {"X-Since": "{incremental.start:%Y-%m-%d}"},
        },
        incremental={"cursor_path": "updated_at", "initial_value": "2025-12-31"},
    )
    assert runner.run_json("feed")[0] == 0
    first = upstream.requests[0]
    assert first.query["updated_since"] == str(int(datetime(2025, 12, 31, tzinfo=UTC).timestamp()))
    assert first.headers["x-since"] == "2025-12-31"
    assert runner.run_json("feed")[0] == 0
    mark = datetime.fromisoformat(upstream.feed.newest("acme"))
    assert upstream.requests[-1].query["updated_since"] == str(int(mark.timestamp()))


def test_a_source_wide_state_moves_only_when_every_item_succeeded(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    runner = Runner(cli, tmp_path)
    for account in ("acme", "beta"):
        upstream.feed.add(account, 2)
    cursor_source(
        runner,
        upstream,
        request={
            "base_url": f"{upstream.url}/inc/{{account.id}}/records",
            "parameters": {"updated_since": "{incremental.start}"},
        },
        iteration={"foreach": "account", "items": [{"id": "acme"}, {"id": "beta"}]},
        incremental={"cursor_path": "updated_at", "per_item": False},
    )
    upstream.feed.fail_accounts = {"beta"}
    code, _, stderr = runner.run_json("feed")
    assert code == 3 and states(runner) == {}
    assert "feed: state not advanced (1 item(s) failed): the next run fetches from the same start" in stderr
    upstream.feed.fail_accounts = set()
    assert runner.run_json("feed")[0] == 0
    assert states(runner) == {None: max(upstream.feed.newest("acme"), upstream.feed.newest("beta"))}


# -- the state commands, backfills, list and runs ---------------------------------------------------------


def test_state_set_get_list_reset(cli: Cli, tmp_path: Path, upstream: Upstream) -> None:
    runner = Runner(cli, tmp_path)
    per_item = {"foreach": "account", "items": [{"id": "acme"}]}
    cursor_source(runner, upstream, iteration=per_item)  # one state per item
    result = runner("state", "set", "feed", "2026-01-03T00:00:00Z", "--item", "acme", "--output", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["value"] == "2026-01-03T00:00:00Z"
    got = json.loads(runner("state", "get", "feed", "--item", "acme", "--output", "json").stdout)
    assert got["_id"] == "feed/acme" and got["run_id"] is None and got["version"] == 1
    cursor_source(runner, upstream)  # one state for the source
    assert json.loads(runner("state", "set", "feed", "42", "--output", "json").stdout)["value"] == 42
    table = runner("state", "list").stdout
    assert "feed" in table and "acme" in table and "(set by hand)" in table
    assert states(runner) == {"acme": "2026-01-03T00:00:00Z", None: 42}
    reset = runner("state", "reset", "feed", "--item", "acme", "--output", "json")
    assert json.loads(reset.stdout) == {"source_id": "feed", "item": "acme", "removed": 1}
    missing = runner("state", "get", "feed", "--item", "acme", PULLCTL_LOG_FORMAT="text")
    assert missing.exit_code == 2
    assert "error: no state for item 'acme' of source 'feed' (see: pullctl state list feed)" in missing.stderr
    assert runner("state", "reset", "feed").exit_code == 0 and states(runner) == {}


@pytest.mark.parametrize(
    ("ingestion", "args", "message"),
    [
        (
            {"incremental": None},
            [],
            "feed keeps no state between runs (no ingestion.incremental, and its window.since is not"
            " last_success): a state set now would never be read",
        ),
        (
            {},
            ["--item", "@window"],
            "--item '@window': feed keeps no window mark (its window.since is not last_success)",
        ),
        (
            {"iteration": {"foreach": "account", "items": [{"id": "acme"}]}},
            [],
            "--item is needed: feed keeps one state per item (incremental.per_item)",
        ),
        (
            {},
            ["--item", "acme"],
            "--item 'acme': feed keeps one state for the source (incremental.per_item: false): leave it out",
        ),
        (
            {"incremental": None, "window": {"since": "last_success", "step": "1h"}},
            [],
            "--item @window is needed: feed keeps only its window mark (item @window)",
        ),
    ],
)
def test_state_set_refuses_a_state_no_run_would_read(
    cli: Cli, tmp_path: Path, upstream: Upstream, ingestion: dict[str, Any], args: list[str], message: str
) -> None:
    runner = Runner(cli, tmp_path)
    if "incremental" in ingestion:  # no incremental state: no {incremental.start} either
        ingestion = {**ingestion, "request": {"base_url": f"{upstream.url}/inc/acme/records"}}
    cursor_source(runner, upstream, **ingestion)
    result = runner("state", "set", "feed", "2026-01-03T00:00:00Z", *args, PULLCTL_LOG_FORMAT="text")
    assert (result.exit_code, result.stderr) == (2, f"error: {message}\n")
    assert states(runner) == {}  # nothing written
    unknown = runner("state", "set", "fede", "1", PULLCTL_LOG_FORMAT="text")
    assert unknown.stderr == "error: no source 'fede' in the configs; did you mean 'feed'?\n"


def test_a_backfill_leaves_the_state_unless_advance_state(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    runner = Runner(cli, tmp_path)
    upstream.feed.add("acme", 3)
    cursor_source(runner, upstream)
    backfill = ("feed", "--from", "2026-01-01", "--to", "2026-01-02")
    assert runner.run_json(*backfill)[0] == 0
    assert states(runner) == {}
    assert runner.run_json(*backfill, "--advance-state")[0] == 0
    assert states(runner) == {None: upstream.feed.newest("acme")}
    wrong = runner("run", "feed", "--advance-state", PULLCTL_LOG_FORMAT="text")
    assert wrong.exit_code == 2
    assert "--advance-state applies to a backfill (--from/--to); a scheduled run always does" in wrong.stderr


def test_a_backfill_with_advance_state_never_moves_the_window_mark_past_a_gap(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    runner = Runner(cli, tmp_path)
    upstream.feed.add("acme", 1)
    write_source(
        runner.config,
        "feed",
        request={"base_url": f"{upstream.url}/inc/acme/records"},
        records={"path": "data"},
        window={"since": "last_success", "initial": "2026-01-01"},
    )
    code, _, stderr = runner.run_json("feed", "--from", "2026-01-03", "--to", "2026-01-04", "--advance-state")
    assert code == 0 and states(runner) == {}
    assert (
        "feed: the backfill left the window mark at 2026-01-01T00:00:00+00:00: it starts later"
        " (2026-01-03T00:00:00+00:00), and moving the mark past the gap would skip it"
    ) in stderr
    assert runner.run_json("feed", "--from", "2026-01-01", "--to", "2026-01-02", "--advance-state")[0] == 0
    assert states(runner) == {"@window": "2026-01-02T00:00:00+00:00"}


def test_list_and_runs_show_the_state_and_how_far_behind(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    runner = Runner(cli, tmp_path)
    upstream.feed.add("acme", 2)
    cursor_source(runner, upstream)
    assert runner.run_json("feed")[0] == 0
    listed = json.loads(runner("list", "--output", "json").stdout)
    state = listed[0]["state"]
    assert state["states"] == 1 and state["value"] == upstream.feed.newest("acme")
    assert state["behind_seconds"] > 0  # the feed's records are from 2026-01-01
    assert "behind)" in runner("list").stdout
    runs = json.loads(runner("runs", "--output", "json").stdout)
    assert runs[0]["source_state"] == {**state, "behind_seconds": runs[0]["source_state"]["behind_seconds"]}
    assert "behind)" in runner("runs").stdout


def test_list_still_lists_when_the_states_cannot_be_read(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    runner = Runner(cli, tmp_path)
    cursor_source(runner, upstream)
    (tmp_path / "x.db").write_text("not a database")  # a store that cannot be read
    result = runner("list", "--output", "json", "--store", f"sqlite:///{tmp_path}/x.db")
    assert result.exit_code == 0
    assert json.loads(result.stdout)[0]["state"] is None
    assert "the states are not shown: " in result.stderr


class _AlwaysLoses:
    def __init__(self, store: Store) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def swap_state(self, record: StateRecord) -> bool:
        return False


@pytest.mark.anyio
async def test_a_swap_that_never_lands_is_a_store_error(stores: Stores) -> None:
    from pullctl.errors import StoreError

    store = await stores.open()
    with pytest.raises(StoreError, match=r"^the state of feed \(acme\) changed 100 times while written$"):
        await incremental.advance(_AlwaysLoses(store), "feed", "acme", 1, "r", kind="cursor")


def test_a_last_success_source_with_nothing_to_fetch_yet_says_it_is_up_to_date(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    runner = Runner(cli, tmp_path)
    write_source(
        runner.config,
        "feed",
        request={"base_url": f"{upstream.url}/inc/acme/records"},
        records={"path": "data"},
        window={"since": "last_success", "initial": "2999-01-01"},  # not yet
    )
    result = runner("run", "feed", PULLCTL_LOG_FORMAT="text")
    assert result.exit_code == 0 and result.stdout == ""
    assert "feed is up to date: nothing to fetch yet" in result.stderr
    assert upstream.requests == []


def test_the_state_lives_in_either_store(
    cli: Cli, tmp_path: Path, upstream: Upstream, store_target: StoreTarget, request: pytest.FixtureRequest
) -> None:
    env = {"PULLCTL_STORE": store_target.url, "PULLCTL_MONGODB_DATABASE": store_target.database}
    runner = Runner(cli, tmp_path, env)
    if store_target.kind == "mongodb":
        from pymongo import MongoClient

        client: MongoClient[dict[str, Any]] = MongoClient(store_target.url)
        request.addfinalizer(lambda: (client.drop_database(store_target.database), client.close()))
    ids = upstream.feed.add("acme", 4)
    window = {"since": "last_success", "initial": "2026-01-01", "lookback": "400d"}  # the next run again
    cursor_source(runner, upstream, window=window)
    assert runner.run_json("feed")[0] == 0
    assert set(states(runner)) == {None, "@window"}
    upstream.feed.touch("acme", ids[:1])
    code, records, _ = runner.run_json("feed")
    assert code == 0 and records[0]["counts"]["stored"] == 1
    found = states(runner)
    assert found[None] == upstream.feed.newest("acme")
    assert found["@window"] == records[0]["window"]["end"]
    assert runner("state", "reset", "feed").exit_code == 0 and states(runner) == {}

"""Secret resolution (environment, DAPR emulator, neither) and the pure plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pullctl.config.models import SourceConfig
from pullctl.errors import UsageError
from pullctl.run.plan import Planner, Shard, Window, backfill_windows, parse_step, plan_items, shard_of
from tests.conftest import Cli
from tests.emulators.dapr import DaprEmulator
from tests.runkit import Runner, write_source
from tests.servers.upstream import Upstream


def _auth_source(runner: Runner, upstream: Upstream) -> None:
    write_source(
        runner.config,
        "authed",
        request={
            "base_url": f"{upstream.url}/auth/bearer",
            "auth_type": "bearer",
            "secret_store": "vault",
            "secret_key": "api-token",
        },
        retry={"max_attempts": 1},
    )


def test_secret_from_environment(cli: Cli, tmp_path: Path, upstream: Upstream) -> None:
    runner = Runner(cli, tmp_path, {"PULLCTL_SECRET_VAULT_API_TOKEN": upstream.bearer_token})
    _auth_source(runner, upstream)
    code, [record], stderr = runner.run_json("authed")
    assert code == 0 and record["counts"]["stored"] == 1
    assert upstream.bearer_token not in stderr + str(record)


def test_secret_from_the_dapr_secret_store(
    cli: Cli, tmp_path: Path, upstream: Upstream, dapr_emulator: DaprEmulator
) -> None:
    dapr_emulator.secrets = {"vault": {"api-token": upstream.bearer_token}}
    runner = Runner(cli, tmp_path, {"DAPR_HTTP_ENDPOINT": dapr_emulator.url})
    _auth_source(runner, upstream)
    code, [record], _ = runner.run_json("authed")
    assert code == 0 and record["counts"]["stored"] == 1
    assert any(r.path == "/v1.0/secrets/vault/api-token" for r in dapr_emulator.requests)


def test_missing_secret_names_both_places(
    cli: Cli, tmp_path: Path, upstream: Upstream, dapr_emulator: DaprEmulator
) -> None:
    dapr_emulator.secrets = {"vault": {}}
    runner = Runner(cli, tmp_path, {"DAPR_HTTP_ENDPOINT": dapr_emulator.url})
    _auth_source(runner, upstream)
    code, [record], _ = runner.run_json("authed")
    assert code == 1
    assert record["message"].startswith(
        "secret 'api-token' of store 'vault' not found: set PULLCTL_SECRET_VAULT_API_TOKEN or make it available in"
        " the DAPR secret store 'vault' (DAPR could not read secret 'api-token' from secret store 'vault': HTTP 500"
        " ERR_SECRET_GET"
    )
    assert upstream.requests == []


def test_no_sidecar_at_all(cli: Cli, tmp_path: Path, upstream: Upstream) -> None:
    runner = Runner(cli, tmp_path, {"DAPR_HTTP_ENDPOINT": "http://127.0.0.1:9"})
    _auth_source(runner, upstream)
    code, [record], _ = runner.run_json("authed")
    assert code == 1
    assert (
        "cannot reach the DAPR sidecar at http://127.0.0.1:9 to read secret 'api-token' from secret store 'vault'"
        in record["message"]
    )


CONFIG = SourceConfig.model_validate(
    {
        "source_id": "s",
        "ingestion": {
            "schedule": "@daily",
            "request": {
                "base_url": "https://x.example/{item.id}",
                "parameters": {"d": "{window.start:%Y-%m-%d}"},
            },
            "iteration": {"foreach": "item", "items": [{"id": "a"}], "key": "id"},
        },
    }
)
WINDOW = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))


def test_plan_renders_each_item() -> None:
    items = [{"id": "a", "n": 1}, {"id": "b/../c", "n": 2}]
    plan = plan_items(Planner(CONFIG, WINDOW, "run-1"), items)
    assert [(t.key, t.url, t.params, t.linkage) for t in plan.tasks] == [
        ("a", "https://x.example/a", {"d": "2026-01-01"}, {"id": "a", "n": 1}),
        ("b/../c", "https://x.example/b%2F..%2Fc", {"d": "2026-01-01"}, {"id": "b/../c", "n": 2}),
    ]


def test_shards_are_stable_and_cover_everything() -> None:
    items = [{"id": f"i{n}"} for n in range(200)]
    parts = [plan_items(Planner(CONFIG, WINDOW, "r", shard=Shard(i, 4)), items).tasks for i in range(4)]
    keys = sorted(t.key for p in parts for t in p)
    assert keys == sorted(f"i{n}" for n in range(200))
    assert all(30 < len(p) < 70 for p in parts)
    assert shard_of("i7", 4) == shard_of("i7", 4)


def test_overrides_and_limit() -> None:
    plan = plan_items(
        Planner(CONFIG, WINDOW, "r", overrides={"d": "fixed"}, limit=1), [{"id": "a"}, {"id": "b"}]
    )
    assert [(t.key, t.params) for t in plan.tasks] == [("a", {"d": "fixed"})]
    with pytest.raises(UsageError, match=r"^--set d=\{nope\.x\}: unknown template variable 'nope'$"):
        plan_items(Planner(CONFIG, WINDOW, "r", overrides={"d": "{nope.x}"}), [])


def test_backfill_windows_and_steps() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    windows = backfill_windows(start, start + timedelta(hours=60), parse_step("1d"))
    assert [(w.end - w.start).total_seconds() / 3600 for w in windows] == [24, 24, 12]
    assert parse_step("1d12h") == timedelta(hours=36)
    with pytest.raises(UsageError, match=r"^--step 'x': expected a duration such as 1d, 6h, 30m or 1h30m$"):
        parse_step("x")

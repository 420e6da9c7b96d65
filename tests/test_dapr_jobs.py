"""DAPR Jobs: the sidecar client (1.18 stable API, 1.17 alpha fallback) and `pullctl jobs sync|list|delete`.

Everything runs against the DAPR sidecar emulator on loopback and a real SQLite store.
"""

from __future__ import annotations

import json
import re
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pullctl.config.loader import LoadedSource, load_paths
from pullctl.dapr import DaprClient
from pullctl.errors import DaprError
from pullctl.pipeline.store import store_at
from pullctl.retry import backoff_delay
from pullctl.schedulers.dapr_jobs import follow_config_change, plan_jobs, startup_policy
from pullctl.settings import Settings
from tests.conftest import Cli
from tests.emulators.dapr import DaprEmulator
from tests.runkit import Runner, write_source
from tests.stores import anyio_backend  # noqa: F401  (fixture)

REQUEST = {"base_url": "https://api.example.test/v1/forecast"}
SUMMARY = re.compile(r" in \d+\.\d s$")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


TEXT = {"PULLCTL_LOG_FORMAT": "text"}  # the jobs commands' messages as people read them


@pytest.fixture
def dapr117() -> Iterator[DaprEmulator]:
    with DaprEmulator(version="1.17") as emulator:
        yield emulator


@pytest.fixture
def jobs(cli: Cli, tmp_path: Path, dapr_emulator: DaprEmulator) -> Runner:
    return Runner(cli, tmp_path, {"DAPR_HTTP_ENDPOINT": dapr_emulator.url, **TEXT})


def writes(emulator: DaprEmulator) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in emulator.requests if r.method != "GET"]


def loaded(folder: Path) -> dict[str, LoadedSource]:
    return {s.source_id: s for s in load_paths([folder], target="dapr").sources}


def registry(runner: Runner) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(runner.db) as conn:
        rows = conn.execute("SELECT _id, source_id, config_hash FROM dapr_jobs ORDER BY _id").fetchall()
    return {name: (source_id, digest) for name, source_id, digest in rows}


def disable(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**doc, "enabled": False}))


def summary(result: Any) -> str:
    """stderr's last line without its timing."""
    last = result.stderr.splitlines()[-1]
    assert SUMMARY.search(last), result.stderr
    return SUMMARY.sub("", last)


# ---------------------------------------------------------------------------------------------------------
# The client


@pytest.mark.anyio
async def test_client_jobs_on_1_18_use_the_stable_api(dapr_emulator: DaprEmulator) -> None:
    async with DaprClient(dapr_emulator.url) as dapr:
        await dapr.schedule_job("pull-a", schedule="0 0 6 * * *", data={"source_id": "a", "config_hash": "h"})
        job = await dapr.get_job("pull-a")
        await dapr.schedule_job(
            "pull-a", schedule="@every 1h30m", data={"source_id": "a", "config_hash": "i"}
        )
        replaced = await dapr.get_job("pull-a")
        await dapr.delete_job("pull-a")
        gone = await dapr.get_job("pull-a")
        await dapr.delete_job("pull-a")  # a missing job: no error
        assert dapr.jobs_api_version == "v1.0"
    assert job == {
        "name": "pull-a",
        "schedule": "0 0 6 * * *",
        "data": {"source_id": "a", "config_hash": "h"},
    }
    assert replaced is not None and replaced["schedule"] == "@every 1h30m"
    assert replaced["data"] == {"source_id": "a", "config_hash": "i"}
    assert gone is None
    assert {r.path for r in dapr_emulator.requests} == {"/v1.0/jobs/pull-a"}
    post = dapr_emulator.requests[0]
    assert post.json() == {
        "schedule": "0 0 6 * * *",
        "overwrite": True,
        "data": {"source_id": "a", "config_hash": "h"},
    }
    assert post.headers["content-type"] == "application/json"


@pytest.mark.anyio
async def test_client_falls_back_to_alpha1_on_1_17_and_remembers_it(dapr117: DaprEmulator) -> None:
    async with DaprClient(dapr117.url) as dapr:
        await dapr.schedule_job("pull-a", schedule="@daily", data={"source_id": "a"})
        assert dapr.jobs_api_version == "v1.0-alpha1"
        job = await dapr.get_job("pull-a")
        await dapr.delete_job("pull-a")
        assert await dapr.get_job("pull-a") is None
    assert job is not None and job["data"] == {"source_id": "a"}
    assert [(r.method, r.path) for r in dapr117.requests] == [
        ("POST", "/v1.0/jobs/pull-a"),  # 404 ERR_DIRECT_INVOKE on 1.17
        ("POST", "/v1.0-alpha1/jobs/pull-a"),
        ("GET", "/v1.0-alpha1/jobs/pull-a"),
        ("DELETE", "/v1.0-alpha1/jobs/pull-a"),
        ("GET", "/v1.0-alpha1/jobs/pull-a"),
    ]
    assert dapr117.jobs == {}


@pytest.mark.anyio
async def test_client_sends_the_api_token() -> None:
    with DaprEmulator(api_token="t0ken") as emulator:
        async with DaprClient(emulator.url, api_token="t0ken") as dapr:
            await dapr.schedule_job("pull-a", schedule="@daily")
        async with DaprClient(emulator.url) as dapr:
            with pytest.raises(DaprError) as refused:
                await dapr.get_job("pull-a")
    assert emulator.requests[0].headers["dapr-api-token"] == "t0ken"
    assert refused.value.message == "DAPR could not get job 'pull-a': HTTP 401 invalid api token\n"


@pytest.mark.anyio
async def test_client_surfaces_dapr_error_bodies(dapr_emulator: DaprEmulator) -> None:
    async with DaprClient(dapr_emulator.url) as dapr:
        with pytest.raises(DaprError) as bad:
            await dapr.schedule_job("pull-a", schedule="0 6 * * *")
    assert bad.value.status == 400 and bad.value.error_code == "DAPR_SCHEDULER_SCHEDULE_JOB"
    assert bad.value.message == (
        "DAPR could not schedule job 'pull-a': HTTP 400 DAPR_SCHEDULER_SCHEDULE_JOB: failed to schedule job"
        " due to: rpc error: code = InvalidArgument desc = job failed validation: expected exactly 6"
        " fields, found 5: [0 6 * * *]"
    )


@pytest.mark.anyio
async def test_a_get_error_other_than_not_found_is_raised() -> None:
    with DaprEmulator(api_token="t") as emulator:
        async with DaprClient(emulator.url, api_token="wrong") as dapr:
            with pytest.raises(DaprError, match="HTTP 401"):
                await dapr.get_job("pull-a")


@pytest.mark.anyio
async def test_an_absent_sidecar_is_one_clear_message() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    async with DaprClient(endpoint) as dapr:
        with pytest.raises(DaprError) as absent:
            await dapr.schedule_job("pull-a", schedule="@daily")
    assert absent.value.status is None
    assert absent.value.message.startswith(
        f"cannot reach the DAPR sidecar at {endpoint} to schedule job 'pull-a': ConnectError: "
    )
    assert absent.value.message.endswith("(is the sidecar running? set DAPR_HTTP_ENDPOINT or DAPR_HTTP_PORT)")


# ---------------------------------------------------------------------------------------------------------
# The plan (pure)


def test_plan_compares_config_hashes_with_the_registry(tmp_path: Path) -> None:
    from pullctl.schedulers.dapr_jobs import desired_jobs

    write_source(tmp_path, "a", request=REQUEST)
    write_source(tmp_path, "b", request=REQUEST)
    write_source(tmp_path, "c", request=REQUEST)
    src = loaded(tmp_path)
    reg = [
        {"_id": "pull-b", "source_id": "b", "config_hash": src["b"].config_hash},
        {"_id": "pull-c", "source_id": "c", "config_hash": "old"},
        {"_id": "pull-gone", "source_id": "gone", "config_hash": "x"},
    ]
    desired = desired_jobs(list(src.values()))
    assert [(e.name, e.action) for e in plan_jobs(desired, reg)] == [
        ("pull-a", "register"),
        ("pull-b", "unchanged"),
        ("pull-c", "update"),
        ("pull-gone", "delete"),
    ]
    assert plan_jobs(desired, reg, prune=False)[-1].action == "keep"


def test_startup_delays_double_up_to_the_cap() -> None:
    policy = startup_policy(6, 1.0, 5.0)
    assert [backoff_delay(policy, n) for n in range(1, policy.max_attempts)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert startup_policy(1, 1.0, 5.0).max_attempts == 1


# ---------------------------------------------------------------------------------------------------------
# `pullctl jobs sync`


def test_sync_registers_then_is_unchanged_then_updates_then_prunes(
    jobs: Runner, dapr_emulator: DaprEmulator
) -> None:
    write_source(jobs.config, "weather-api", request=REQUEST)
    write_source(jobs.config, "soil-api", schedule="@every 1h30m", request=REQUEST)
    disable(write_source(jobs.config, "paused", request=REQUEST))
    write_source(jobs.config, "blobs", mode="blob_trigger")
    hashes = {k: v.config_hash for k, v in loaded(jobs.config).items()}

    first = jobs("jobs", "sync")
    assert first.exit_code == 0, first.stderr
    assert first.stdout == (
        "register   job/pull-soil-api  @every 1h30m\nregister   job/pull-weather-api  0 0 6 * * *\n"
    )
    assert summary(first) == (
        f"✓ DAPR sidecar {dapr_emulator.url}: 2 registered, 0 updated, 0 unchanged, 0 deleted"
    )
    assert dapr_emulator.jobs == {
        "pull-weather-api": {
            "name": "pull-weather-api",
            "schedule": "0 0 6 * * *",
            "data": {"source_id": "weather-api", "config_hash": hashes["weather-api"]},
        },
        "pull-soil-api": {
            "name": "pull-soil-api",
            "schedule": "@every 1h30m",
            "data": {"source_id": "soil-api", "config_hash": hashes["soil-api"]},
        },
    }
    assert registry(jobs) == {
        "pull-soil-api": ("soil-api", hashes["soil-api"]),
        "pull-weather-api": ("weather-api", hashes["weather-api"]),
    }

    dapr_emulator.requests.clear()
    again = jobs("jobs", "sync")
    assert again.exit_code == 0
    assert again.stdout == (
        "unchanged  job/pull-soil-api  @every 1h30m\nunchanged  job/pull-weather-api  0 0 6 * * *\n"
    )
    assert writes(dapr_emulator) == []  # zero writes to the sidecar

    write_source(jobs.config, "weather-api", schedule="30 7 * * 1-5", request=REQUEST)
    changed = jobs("jobs", "sync")
    assert changed.stdout.splitlines()[1] == "update     job/pull-weather-api  0 30 7 * * 1-5"
    assert writes(dapr_emulator) == [("POST", "/v1.0/jobs/pull-weather-api")]
    new_hash = loaded(jobs.config)["weather-api"].config_hash
    assert dapr_emulator.jobs["pull-weather-api"]["schedule"] == "0 30 7 * * 1-5"
    assert dapr_emulator.jobs["pull-weather-api"]["data"]["config_hash"] == new_hash
    assert registry(jobs)["pull-weather-api"] == ("weather-api", new_hash)

    (jobs.config / "soil-api.yaml").unlink()
    kept = jobs("jobs", "sync", "--no-prune")
    assert kept.stdout.splitlines()[0] == "keep       job/pull-soil-api  (not pruned: --no-prune)"
    assert "pull-soil-api" in dapr_emulator.jobs
    pruned = jobs("jobs", "sync")
    assert pruned.stdout.splitlines()[0] == "delete     job/pull-soil-api"
    assert summary(pruned).endswith("0 registered, 0 updated, 1 unchanged, 1 deleted")
    assert "pull-soil-api" not in dapr_emulator.jobs and "pull-soil-api" not in registry(jobs)


def test_dry_run_sends_nothing_and_json_output(jobs: Runner, dapr_emulator: DaprEmulator) -> None:
    write_source(jobs.config, "weather-api", request=REQUEST)
    dry = jobs("jobs", "sync", "--dry-run")
    assert dry.exit_code == 0
    assert dry.stdout == "register   job/pull-weather-api  0 0 6 * * *\n"
    assert summary(dry) == (
        f"✓ dry run, nothing sent to DAPR sidecar {dapr_emulator.url}: 1 to register, 0 to update,"
        " 0 unchanged, 0 to delete"
    )
    assert dapr_emulator.requests == [] and dapr_emulator.jobs == {}

    result = jobs("jobs", "sync", "--output", "json")
    plan = json.loads(result.stdout)
    assert plan["dry_run"] is False and plan["endpoint"] == dapr_emulator.url
    assert plan["counts"] == {"register": 1, "update": 0, "unchanged": 0, "delete": 0, "keep": 0, "failed": 0}
    assert plan["jobs"] == [
        {
            "name": "pull-weather-api",
            "source_id": "weather-api",
            "action": "register",
            "schedule": "0 0 6 * * *",
            "config_hash": loaded(jobs.config)["weather-api"].config_hash,
            "error": None,
        }
    ]


def test_timezone_becomes_a_cron_tz_prefix(jobs: Runner, dapr_emulator: DaprEmulator) -> None:
    write_source(jobs.config, "berlin", timezone="Europe/Berlin", request=REQUEST)
    write_source(jobs.config, "daily", schedule="@daily", timezone="America/New_York", request=REQUEST)
    write_source(jobs.config, "every", schedule="@every 15m", timezone="Europe/Berlin", request=REQUEST)
    assert jobs("jobs", "sync").exit_code == 0
    assert {name: job["schedule"] for name, job in dapr_emulator.jobs.items()} == {
        "pull-berlin": "CRON_TZ=Europe/Berlin 0 0 6 * * *",
        "pull-daily": "CRON_TZ=America/New_York @daily",
        "pull-every": "@every 15m",  # a fixed interval: no zone changes it
    }


def test_one_job_failing_does_not_stop_the_others(cli: Cli, tmp_path: Path, dapr117: DaprEmulator) -> None:
    runner = Runner(cli, tmp_path, {"DAPR_HTTP_ENDPOINT": dapr117.url, **TEXT})
    write_source(runner.config, "berlin", timezone="Europe/Berlin", request=REQUEST)
    write_source(runner.config, "weather-api", request=REQUEST)
    result = runner("jobs", "sync")
    assert result.exit_code == 1
    assert result.stdout == (
        "register   job/pull-berlin  CRON_TZ=Europe/Berlin 0 0 6 * * *\n"
        "register   job/pull-weather-api  0 0 6 * * *\n"
    )
    lines = result.stderr.splitlines()
    assert lines[0] == (
        "error: job/pull-berlin: DAPR could not schedule job 'pull-berlin': HTTP 400"
        " DAPR_SCHEDULER_SCHEDULE_JOB: failed to schedule job due to: rpc error: code = InvalidArgument"
        " desc = job failed validation: expected exactly 6 fields, found 7: [CRON_TZ=Europe/Berlin 0 0 6 * * *];"
        " a 'timezone' becomes a CRON_TZ= prefix, which DAPR understands from 1.18.3: upgrade DAPR or remove"
        " 'timezone' (the schedule then runs in UTC)"
    )
    assert summary(result) == (
        f"✗ 1 of 2 failed; DAPR sidecar {dapr117.url}: 1 registered, 0 updated, 0 unchanged, 0 deleted"
    )
    assert list(dapr117.jobs) == ["pull-weather-api"]
    assert list(registry(runner)) == ["pull-weather-api"]  # the failed one is retried by the next sync


def test_sync_without_a_sidecar_is_one_clear_error(cli: Cli, tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    runner = Runner(cli, tmp_path, {"DAPR_HTTP_ENDPOINT": endpoint, **TEXT})
    write_source(runner.config, "weather-api", request=REQUEST)
    result = runner("jobs", "sync")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(
        f"error: cannot reach the DAPR sidecar at {endpoint} to schedule job 'pull-weather-api': ConnectError:"
    )
    assert result.stderr.endswith("(is the sidecar running? set DAPR_HTTP_ENDPOINT or DAPR_HTTP_PORT)\n")
    assert len(result.stderr.splitlines()) == 1


def test_sync_refuses_invalid_configs_so_their_jobs_are_not_pruned(
    jobs: Runner, dapr_emulator: DaprEmulator
) -> None:
    write_source(jobs.config, "weather-api", request=REQUEST)
    assert jobs("jobs", "sync").exit_code == 0
    (jobs.config / "weather-api.yaml").write_text("source_id: weather-api\ningestion: {schedule: nope}\n")
    result = jobs("jobs", "sync")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: 1 config error:\n")
    assert "ingestion.schedule: 'nope' has 1 fields" in result.stderr
    assert "pull-weather-api" in dapr_emulator.jobs


# ---------------------------------------------------------------------------------------------------------
# `pullctl jobs list` and `pullctl jobs delete`


def test_list_joins_the_registry_with_the_sidecar(jobs: Runner, dapr_emulator: DaprEmulator) -> None:
    write_source(jobs.config, "weather-api", request=REQUEST)
    write_source(jobs.config, "soil-api", schedule="@hourly", request=REQUEST)
    assert jobs("jobs", "sync").exit_code == 0
    del dapr_emulator.jobs["pull-soil-api"]  # lost by the scheduler

    listed = json.loads(jobs("jobs", "list", "--output", "json").stdout)
    assert [(j["name"], j["status"], j["schedule"]) for j in listed] == [
        ("pull-soil-api", "missing", None),
        ("pull-weather-api", "active", "0 0 6 * * *"),
    ]
    assert listed[1]["data"] == {
        "source_id": "weather-api",
        "config_hash": loaded(jobs.config)["weather-api"].config_hash,
    }

    table = jobs("jobs", "list")
    assert table.exit_code == 0
    head, soil, weather = table.stdout.splitlines()
    assert head.split() == ["JOB", "SOURCE", "SCHEDULE", "STATUS", "CONFIG", "HASH", "REGISTERED", "(UTC)"]
    assert soil.split()[:4] == ["pull-soil-api", "soil-api", "-", "missing"]
    assert weather.split()[:7] == ["pull-weather-api", "weather-api", "0", "0", "6", "*", "*"]
    assert table.stderr == (
        "warning: job/pull-soil-api is in the registry but not in the sidecar: run 'pullctl jobs sync'\n"
    )


def test_delete_removes_the_job_and_its_registry_entry(jobs: Runner, dapr_emulator: DaprEmulator) -> None:
    write_source(jobs.config, "weather-api", request=REQUEST)
    assert jobs("jobs", "sync").exit_code == 0
    result = jobs("jobs", "delete", "weather-api")
    assert result.exit_code == 0
    assert result.stdout == "deleted    job/pull-weather-api\n"
    assert dapr_emulator.jobs == {} and registry(jobs) == {}
    again = jobs("jobs", "delete", "weather-api")
    assert again.stdout == "deleted    job/pull-weather-api  (it was not in the registry)\n"


# ---------------------------------------------------------------------------------------------------------
# Following config changes (what `pullctl config push` / `config delete` call)


@pytest.mark.anyio
async def test_follow_config_change_registers_updates_and_deletes(
    tmp_path: Path, dapr_emulator: DaprEmulator
) -> None:
    settings = Settings.from_env({"DAPR_HTTP_ENDPOINT": dapr_emulator.url})
    store = store_at(f"sqlite:///{tmp_path / 'store.db'}")
    await store.open()
    try:
        write_source(tmp_path / "c", "weather-api", request=REQUEST)
        write_source(tmp_path / "c", "soil-api", request=REQUEST)
        src = loaded(tmp_path / "c")
        assert await follow_config_change(settings, store, list(src.values()), []) is None
        assert sorted(dapr_emulator.jobs) == ["pull-soil-api", "pull-weather-api"]

        dapr_emulator.requests.clear()
        assert await follow_config_change(settings, store, [src["weather-api"]], []) is None
        assert writes(dapr_emulator) == []  # the registry already has that hash

        write_source(tmp_path / "c", "weather-api", schedule="@every 2h", request=REQUEST)
        changed = loaded(tmp_path / "c")["weather-api"]
        assert await follow_config_change(settings, store, [changed], ["soil-api"]) is None
        assert dapr_emulator.jobs["pull-weather-api"]["schedule"] == "@every 2h"
        assert "pull-soil-api" not in dapr_emulator.jobs
        assert [r["_id"] for r in await store.list_jobs()] == ["pull-weather-api"]

        disable(tmp_path / "c" / "weather-api.yaml")
        disabled = loaded(tmp_path / "c")["weather-api"]
        assert await follow_config_change(settings, store, [disabled], []) is None
        assert dapr_emulator.jobs == {} and await store.list_jobs() == []
    finally:
        await store.close()


@pytest.mark.anyio
async def test_follow_config_change_without_a_sidecar_warns(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    settings = Settings.from_env({"DAPR_HTTP_ENDPOINT": endpoint})
    store = store_at(f"sqlite:///{tmp_path / 'store.db'}")
    await store.open()
    try:
        write_source(tmp_path / "c", "weather-api", request=REQUEST)
        warning = await follow_config_change(settings, store, list(loaded(tmp_path / "c").values()), [])
        assert await store.list_jobs() == []
    finally:
        await store.close()
    assert warning is not None
    assert warning.startswith(
        f"the DAPR Jobs did not follow the config change (cannot reach the DAPR sidecar at {endpoint}"
        " to schedule job 'pull-weather-api': ConnectError: "
    )
    assert warning.endswith(
        "); run 'pullctl jobs sync' where the DAPR sidecar of 'pullctl serve' answers"
        f" (DAPR_HTTP_ENDPOINT={endpoint})"
    )

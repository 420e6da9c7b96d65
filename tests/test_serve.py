"""`pullctl serve` under uvicorn on loopback, called back by the DAPR sidecar emulator like the real scheduler.

The pulls are real: the test upstream, the MCP server, a SQLite store (and MongoDB for the seed scenario).
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pymongo import MongoClient

from pullctl.asgi import BackgroundServer
from pullctl.config.loader import ConfigEntry
from pullctl.config.source import ConfigSource, FilesReader
from pullctl.dapr import DaprClient
from pullctl.logs import JsonLines
from pullctl.pipeline.config_store import open_config_source
from pullctl.pipeline.store import store_at
from pullctl.schedulers.dapr_jobs import sync_jobs
from pullctl.server import INTERRUPTED, PullService, create_app
from pullctl.settings import Settings
from tests.conftest import Cli
from tests.emulators.dapr import DaprEmulator
from tests.runkit import Runner, weather, write_source
from tests.servers.mcp_server import McpTestServer
from tests.servers.upstream import Upstream
from tests.stores import anyio_backend  # noqa: F401  (fixture)


class Log(io.StringIO):
    """The serve log (JSON lines), readable from the test thread."""

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.getvalue().splitlines() if line.startswith("{")]
        return [e for e in lines if name is None or e["event"] == name]


def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


class Served:
    """A running `serve` app, its settings, the DAPR emulator calling it back, and its log."""

    def __init__(self, tmp: Path, env: dict[str, str], dapr: DaprEmulator, **service: Any) -> None:
        self.config = tmp / "configs"
        self.db = tmp / "store.db"
        self.dapr = dapr
        self.log = Log()
        self.settings = Settings.from_env(
            {
                "PULLCTL_CONFIG": str(self.config),
                "PULLCTL_STORE": f"sqlite:///{self.db}",
                **env,
                "DAPR_HTTP_ENDPOINT": env.get("DAPR_HTTP_ENDPOINT") or dapr.url,
            }
        )
        options = {"startup_first_delay": 0.05, "startup_max_delay": 0.2, **service}
        self.service = PullService(self.settings, log=JsonLines(self.log), **options)
        self.server = BackgroundServer(create_app(self.settings, self.service))

    def start(self) -> Served:
        self.server.start()
        self.dapr.job_app_url = self.server.url
        return self

    def stop(self) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def ready(self) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            response = httpx.get(f"{self.url}/readyz")
            return response.json() if response.status_code == 200 else None

        result: dict[str, Any] = wait_for(check)
        return result

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", timeout=30, **kwargs)

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        with sqlite3.connect(self.db) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute(sql, args)]

    def runs(self, source_id: str = "weather-api") -> list[dict[str, Any]]:
        rows = self.rows("SELECT record FROM pull_runs WHERE source_id = ? ORDER BY started_at", source_id)
        return [json.loads(r["record"]) for r in rows]

    def documents(self, source_id: str = "weather-api") -> list[dict[str, Any]]:
        rows = self.rows("SELECT * FROM raw_documents WHERE source_id = ?", source_id)
        return [{**r, "linkage": json.loads(r["linkage"])} for r in rows]


@pytest.fixture
def serve_factory(
    tmp_path: Path, dapr_emulator: DaprEmulator, mcp_server: McpTestServer
) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def make(dapr: DaprEmulator | None = None, env: dict[str, str] | None = None, **service: Any) -> Served:
        env = {"PULLCTL_MCP_URL_PLANTATION_MCP": mcp_server.url, **(env or {})}
        served = Served(tmp_path, env, dapr or dapr_emulator, **service)
        started.append(served)
        return served

    yield make
    for served in started:
        served.stop()


@pytest.fixture
def served(serve_factory: Callable[..., Served], upstream: Upstream) -> Served:
    served = serve_factory()
    write_source(served.config, **weather(upstream.url))
    write_source(served.config, "soil-api", schedule="@every 1h30m", **weather(upstream.url))
    write_source(served.config, "blobs", mode="blob_trigger")
    return served.start()


def test_start_up_registers_every_job(served: Served, dapr_emulator: DaprEmulator) -> None:
    ready = served.ready()
    assert ready["ready"] is True and ready["jobs"] == "synced"
    assert ready["counts"]["register"] == 2 and ready["failed"] == []
    assert sorted(dapr_emulator.jobs) == ["pull-soil-api", "pull-weather-api"]
    assert dapr_emulator.jobs["pull-weather-api"]["schedule"] == "0 0 6 * * *"
    assert dapr_emulator.jobs["pull-soil-api"]["schedule"] == "@every 1h30m"
    assert [r["_id"] for r in served.rows("SELECT _id FROM dapr_jobs ORDER BY _id")] == [
        "pull-soil-api",
        "pull-weather-api",
    ]
    assert [e["counts"]["register"] for e in served.log.events("jobs_synced")] == [2]
    assert httpx.get(f"{served.url}/healthz").json() == {"status": "ok"}


def test_a_job_trigger_runs_the_pull_and_stores_documents_and_run_record(
    served: Served, dapr_emulator: DaprEmulator, mcp_server: McpTestServer
) -> None:
    served.ready()
    result = dapr_emulator.trigger_sync("pull-weather-api")
    assert result.status == 200, result.body
    record = json.loads(result.body)
    assert (record["source_id"], record["trigger"], record["status"]) == ("weather-api", "dapr", "succeeded")
    assert record["counts"]["stored"] == 5

    [stored] = served.runs()
    assert stored["run_id"] == record["run_id"] and stored["trigger"] == "dapr"
    assert stored["status"] == "succeeded"
    docs = served.documents()
    assert len(docs) == 5 and {d["run_id"] for d in docs} == {record["run_id"]}
    assert sorted(d["linkage"]["region_id"] for d in docs) == ["r1", "r2", "r3", "r4", "r5"]
    assert docs[0]["linkage"] == next(
        r for r in mcp_server.regions if r["region_id"] == docs[0]["linkage"]["region_id"]
    )

    done = served.log.events("trigger_done")
    assert done[-1]["status"] == "succeeded" and done[-1]["http_status"] == 200
    assert served.log.events("run_finished")[-1]["run_id"] == record["run_id"]


def test_every_trigger_asks_the_sidecar_through_serves_one_client(
    serve_factory: Callable[..., Served], upstream: Upstream
) -> None:
    """Secrets and events of every run go through the one DAPR client ``serve`` opened (one connection,
    kept alive), not a new connection pool per trigger or per secret."""
    dapr = DaprEmulator(secrets={"vault": {"api-token": upstream.bearer_token}}, pubsubs={"pubsub"})
    with dapr:
        served = serve_factory(dapr, env={"PULLCTL_EVENTS": "dapr://pubsub/raw-documents"})
        request = {
            "base_url": f"{upstream.url}/auth/bearer",
            "auth_type": "bearer",
            "secret_store": "vault",
            "secret_key": "api-token",
        }
        write_source(served.config, **weather(upstream.url, request=request))
        served.start().ready()
        for _ in range(2):
            result = dapr.trigger_sync("pull-weather-api")
            assert result.status == 200, result.body
        assert upstream.hits["/auth/bearer"] == 10  # 5 regions, twice
        asked = [r for r in dapr.requests if r.path.startswith(("/v1.0/secrets/", "/v1.0/publish/"))]
        assert {r.path.split("/")[2] for r in asked} == {"secrets", "publish"}
        assert len(asked) == 2 + 5  # a secret per run, an event per new document (the second run: duplicates)
        assert len({r.peer for r in asked}) == 1  # one connection for all of them


def test_the_api_trigger_and_a_job_without_data_use_the_name(
    served: Served, dapr_emulator: DaprEmulator
) -> None:
    served.ready()
    api = served.post("/api/v1/triggers/job/weather-api")
    assert api.status_code == 200 and api.json()["trigger"] == "dapr"
    bare = served.post("/job/pull-weather-api")  # no body: the source comes from the name
    assert bare.status_code == 200 and bare.json()["counts"]["duplicates"] == 5
    assert len(served.runs()) == 2


def test_a_second_trigger_while_one_runs_gets_409(
    served: Served, dapr_emulator: DaprEmulator, upstream: Upstream
) -> None:
    served.ready()
    upstream.fail("/v1/forecast", "delay", delay=0.6, times=5)
    first: list[Any] = []
    thread = threading.Thread(target=lambda: first.append(dapr_emulator.trigger_sync("pull-weather-api")))
    thread.start()
    wait_for(lambda: served.service.in_flight)
    second = dapr_emulator.trigger_sync("pull-weather-api")
    other = served.post("/api/v1/triggers/job/soil-api")  # another source runs meanwhile
    thread.join(30)

    assert second.status == 409
    body = json.loads(second.body)
    run_id = served.runs()[0]["run_id"]
    assert body == {
        "error": f"a run of 'weather-api' is already in progress ({run_id}); this trigger is skipped",
        "source_id": "weather-api",
        "run_id": run_id,
    }
    assert other.status_code == 200
    assert first[0].status == 200 and json.loads(first[0].body)["run_id"] == run_id
    [conflict] = served.log.events("trigger_conflict")
    assert conflict["level"] == "warning" and conflict["run_id"] == run_id
    assert served.post("/api/v1/triggers/job/weather-api").status_code == 200  # free again


def test_an_unknown_source_is_404_and_logged_loudly(served: Served) -> None:
    served.ready()
    response = served.post("/job/pull-nope", json={"source_id": "nope", "config_hash": "x"})
    assert response.status_code == 404
    assert response.json() == {
        "error": f"no source 'nope' in the configs at {served.config}",
        "source_id": "nope",
    }
    [logged] = served.log.events("unknown_source")
    assert logged["level"] == "error" and "DAPR counts a 404 as delivered" in logged["note"]
    assert served.post("/api/v1/triggers/job/nope").status_code == 404
    stray = served.post("/job/backup-db", content=b"")
    assert stray.status_code == 404
    assert stray.json() == {"error": "job 'backup-db' names no source (pullctl's jobs are pull-<source_id>)"}


def test_a_source_in_an_invalid_file_is_500_not_404(served: Served) -> None:
    served.ready()
    (served.config / "broken.yaml").write_text("source_id: broken\ningestion: {schedule: nope}\n")
    response = served.post("/job/pull-broken", json={"source_id": "broken"})
    assert response.status_code == 500
    assert response.json()["error"].startswith("no valid source 'broken'; 1 config error(s), the first: ")


def test_a_disabled_or_blob_source_is_skipped_with_200(served: Served) -> None:
    served.ready()
    blobs = served.post("/api/v1/triggers/job/blobs")
    assert blobs.status_code == 200
    assert blobs.json() == {"source_id": "blobs", "status": "skipped", "reason": "mode blob_trigger"}
    assert served.runs("blobs") == []


def test_a_failed_run_is_500_so_dapr_retries(
    served: Served, dapr_emulator: DaprEmulator, upstream: Upstream
) -> None:
    served.ready()
    upstream.fail("/v1/forecast", status=404)
    result = dapr_emulator.trigger_sync("pull-weather-api")
    assert result.status == 500
    record = json.loads(result.body)
    assert record["status"] == "failed" and record["counts"]["failed"] == 5
    assert served.runs()[0]["status"] == "failed"
    assert served.log.events("trigger_done")[-1]["level"] == "error"


def test_a_partial_run_is_200_and_says_so(
    served: Served, dapr_emulator: DaprEmulator, upstream: Upstream, mcp_server: McpTestServer
) -> None:
    served.ready()
    upstream.fail("/v1/forecast", status=404, query={"latitude": str(mcp_server.regions[0]["latitude"])})
    result = dapr_emulator.trigger_sync("pull-weather-api")
    assert result.status == 200
    record = json.loads(result.body)
    assert record["status"] == "partial" and record["failed_items"] == ["r1"]
    assert served.log.events("trigger_done")[-1]["level"] == "warning"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_start_up_sync_retries_until_the_sidecar_is_there(
    serve_factory: Callable[..., Served], upstream: Upstream
) -> None:
    port = free_port()
    late = DaprEmulator(port=port)
    served = serve_factory(late, env={"DAPR_HTTP_ENDPOINT": f"http://127.0.0.1:{port}"}, startup_attempts=40)
    write_source(served.config, **weather(upstream.url))
    served.start()
    wait_for(lambda: served.log.events("jobs_sync_retry"))
    assert httpx.get(f"{served.url}/readyz").json() == {"ready": False, "jobs": "syncing"}
    with late:
        assert served.ready()["jobs"] == "synced"
        assert list(late.jobs) == ["pull-weather-api"]
    retry = served.log.events("jobs_sync_retry")[0]
    assert retry["level"] == "warning" and "cannot reach the DAPR sidecar" in retry["reason"]


def test_start_up_sync_gives_up_after_its_attempts(
    serve_factory: Callable[..., Served], upstream: Upstream
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    served = serve_factory(env={"DAPR_HTTP_ENDPOINT": endpoint}, startup_attempts=2)
    write_source(served.config, **weather(upstream.url))
    served.start()
    [failed] = wait_for(lambda: served.log.events("jobs_sync_failed"))
    assert failed["message"].startswith(f"cannot reach the DAPR sidecar at {endpoint} to schedule job")
    ready = httpx.get(f"{served.url}/readyz")
    assert ready.status_code == 503 and ready.json()["jobs"] == "failed"
    # triggers still work: DAPR may have the jobs from before
    assert served.post("/api/v1/triggers/job/weather-api").status_code == 200


def test_app_api_token_guards_the_triggers(
    serve_factory: Callable[..., Served], upstream: Upstream, dapr_emulator: DaprEmulator
) -> None:
    served = serve_factory(env={"APP_API_TOKEN": "app-secret"})
    write_source(served.config, **weather(upstream.url))
    served.start().ready()
    assert dapr_emulator.trigger_sync("pull-weather-api").status == 401  # the sidecar without the token
    dapr_emulator.app_token = "wrong"
    assert dapr_emulator.trigger_sync("pull-weather-api").status == 401
    dapr_emulator.app_token = "app-secret"  # as daprd does with dapr.io/app-token-secret
    assert dapr_emulator.trigger_sync("pull-weather-api").status == 200
    assert served.post("/api/v1/triggers/job/weather-api").status_code == 401
    ok = served.post("/api/v1/triggers/job/weather-api", headers={"dapr-api-token": "app-secret"})
    assert ok.status_code == 200
    assert httpx.get(f"{served.url}/healthz").status_code == 200  # probes need no token
    assert "app-secret" not in served.log.getvalue() and '"wrong"' not in served.log.getvalue()
    assert len(served.log.events("trigger_unauthorized")) == 3


def test_serve_refuses_an_open_address_without_a_token(cli: Cli) -> None:
    from pullctl.server import check_exposure

    result = cli("serve", "--host", "0.0.0.0", env={"APP_API_TOKEN": "", "PULLCTL_LOG_FORMAT": "text"})
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: serve on 0.0.0.0 without APP_API_TOKEN lets anyone who reaches the port trigger any pull; set"
        " APP_API_TOKEN (the DAPR app API token, dapr.io/app-token-secret) or pass --allow-unauthenticated"
    )
    assert check_exposure("127.0.0.1", None, False) is None and check_exposure("0.0.0.0", "t", False) is None
    assert check_exposure("0.0.0.0", None, True) == (
        "--allow-unauthenticated: serve on 0.0.0.0 without APP_API_TOKEN lets anyone who reaches the port"
        " trigger any pull"
    )


def test_too_many_runs_get_429_and_an_oversized_body_413(
    serve_factory: Callable[..., Served], upstream: Upstream
) -> None:
    served = serve_factory(max_concurrent_runs=1)
    write_source(served.config, **weather(upstream.url))
    write_source(served.config, "other", **weather(upstream.url))
    served.start().ready()
    upstream.fail("/v1/forecast", "delay", delay=1.0, times=5)
    first: list[Any] = []
    thread = threading.Thread(target=lambda: first.append(served.post("/api/v1/triggers/job/weather-api")))
    thread.start()
    wait_for(lambda: served.service.in_flight)
    busy = served.post("/api/v1/triggers/job/other")
    assert busy.status_code == 429 and busy.headers["retry-after"] == "30"
    assert "max_concurrent_runs=1" in busy.json()["error"]
    thread.join(30)
    assert first[0].status_code == 200
    big = served.post("/job/pull-weather-api", content=b"x" * (64 * 1024 + 1))
    assert big.status_code == 413
    refused = served.log.events("trigger_refused")
    assert [r["reason"] for r in refused] == ["too many runs", "body over 65536 bytes"]


def test_shutdown_waits_for_a_run_in_flight(
    served: Served, dapr_emulator: DaprEmulator, upstream: Upstream
) -> None:
    served.ready()
    upstream.fail("/v1/forecast", "delay", delay=0.5, times=5)
    answers: list[Any] = []
    thread = threading.Thread(target=lambda: answers.append(dapr_emulator.trigger_sync("pull-weather-api")))
    thread.start()
    wait_for(lambda: served.service.in_flight)
    served.stop()
    thread.join(30)
    assert answers[0].status == 200
    assert served.runs()[0]["status"] == "succeeded"


@pytest.mark.anyio
async def test_shutdown_records_a_run_that_outlives_the_grace_period(
    tmp_path: Path, upstream: Upstream, mcp_server: McpTestServer
) -> None:
    write_source(tmp_path / "configs", **weather(upstream.url))
    upstream.fail("/v1/forecast", "delay", delay=5)
    settings = Settings.from_env(
        {
            "PULLCTL_CONFIG": str(tmp_path / "configs"),
            "PULLCTL_STORE": f"sqlite:///{tmp_path / 'store.db'}",
            "PULLCTL_MCP_URL_PLANTATION_MCP": mcp_server.url,
        }
    )
    log = Log()
    service = PullService(settings, sync_on_start=False, shutdown_grace=0.2, log=JsonLines(log))
    await service.start()
    trigger = asyncio.create_task(service.trigger("weather-api", via="test"))
    for _ in range(500):  # until the run is fetching
        if upstream.requests:
            break
        await asyncio.sleep(0.02)
    run_id = service.in_flight["weather-api"].run_id
    await service.stop()
    with pytest.raises(asyncio.CancelledError):
        await trigger

    store = store_at(settings.store)
    await store.open()
    try:
        record = await store.get_run(run_id)
    finally:
        await store.close()
    assert record is not None and record.status == "failed" and record.message == INTERRUPTED
    assert [e["run_id"] for e in log.events("run_interrupted")] == [run_id]


# ---------------------------------------------------------------------------------------------------------
# The seed scenario, end to end: serve + config push/delete against the MongoDB config store


@pytest.mark.mongo
@pytest.mark.usefixtures("pymongo_socket_leaks_tolerated")
def test_seed_scenario_jobs_follow_the_config_store(
    cli: Cli,
    tmp_path: Path,
    mongo_uri: str,
    mongo_database: str,
    dapr_emulator: DaprEmulator,
    upstream: Upstream,
    mcp_server: McpTestServer,
) -> None:
    env = {
        "PULLCTL_CONFIG": mongo_uri,
        "PULLCTL_STORE": mongo_uri,
        "PULLCTL_MONGODB_DATABASE": mongo_database,
        "DAPR_HTTP_ENDPOINT": dapr_emulator.url,
        "PULLCTL_MCP_URL_PLANTATION_MCP": mcp_server.url,
    }
    runner = Runner(cli, tmp_path, env)
    files = tmp_path / "files"
    write_source(files, **weather(upstream.url))
    assert runner("config", "push", str(files)).stdout == "created    weather-api\n"

    # serve starts and registers every job
    log = Log()
    settings = Settings.from_env(env)
    service = PullService(settings, log=JsonLines(log), startup_first_delay=0.05)
    server = BackgroundServer(create_app(settings, service)).start()
    dapr_emulator.job_app_url = server.url
    try:
        wait_for(lambda: httpx.get(f"{server.url}/readyz").status_code == 200)
        assert list(dapr_emulator.jobs) == ["pull-weather-api"]

        # a config pushed through the CLI gets its job at once
        soil = write_source(files, "soil-api", schedule="0 5 * * *", **weather(upstream.url))
        pushed = runner("config", "push", str(soil))
        assert pushed.exit_code == 0 and pushed.stderr == ""
        assert dapr_emulator.jobs["pull-soil-api"]["schedule"] == "0 0 5 * * *"
        first_hash = dapr_emulator.jobs["pull-soil-api"]["data"]["config_hash"]

        # a changed schedule re-registers it
        doc = yaml.safe_load(soil.read_text())
        doc["ingestion"]["schedule"] = "@every 2h"
        soil.write_text(yaml.safe_dump(doc))
        assert runner("config", "push", str(soil)).stdout == "updated    soil-api\n"
        job = dapr_emulator.jobs["pull-soil-api"]
        assert job["schedule"] == "@every 2h" and job["data"]["config_hash"] != first_hash

        # a trigger through the sidecar runs the pull and stores the documents with linkage
        result = dapr_emulator.trigger_sync("pull-weather-api")
        assert result.status == 200, result.body
        record = json.loads(result.body)
        assert record["trigger"] == "dapr" and record["counts"]["stored"] == 5
        client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
        try:
            db = client[mongo_database]
            docs = list(db["raw_documents"].find({"source_id": "weather-api"}))
            run = db["pull_runs"].find_one({"_id": record["run_id"]})
        finally:
            client.close()
        assert sorted(d["linkage"]["region_id"] for d in docs) == ["r1", "r2", "r3", "r4", "r5"]
        assert run is not None and run["trigger"] == "dapr" and run["status"] == "succeeded"

        # config delete removes the job
        deleted = runner("config", "delete", "soil-api")
        assert deleted.exit_code == 0 and deleted.stderr == ""
        assert list(dapr_emulator.jobs) == ["pull-weather-api"]

        # and serve's registry agrees: a resync changes nothing
        async def resync() -> list[tuple[str, str]]:
            store = store_at(mongo_uri, mongo_database)
            await store.open()
            try:
                async with DaprClient(dapr_emulator.url) as dapr:
                    sources = open_config_source(mongo_uri, mongo_database).all("dapr").sources
                    plan = await sync_jobs(dapr, store, sources, dry_run=True)
            finally:
                await store.close()
            return [(e.name, e.action) for e in plan.entries]

        assert asyncio.run(resync()) == [("pull-weather-api", "unchanged")]
    finally:
        server.stop()


class RecordingReader:
    """The configs folder as a ``ConfigReader`` that notes every read and whether it ran on an event loop."""

    def __init__(self, folder: Path) -> None:
        self.files = FilesReader([folder])
        self.reads: list[str] = []  # "loop" or "thread", one per read

    def entries(self) -> list[ConfigEntry]:
        try:
            asyncio.get_running_loop()
            self.reads.append("loop")
        except RuntimeError:
            self.reads.append("thread")
        return list(self.files.entries())


def test_a_trigger_reads_the_configs_once_and_off_the_event_loop(
    serve_factory: Callable[..., Served], upstream: Upstream, tmp_path: Path
) -> None:
    reader = RecordingReader(tmp_path / "configs")
    served = serve_factory(configs=ConfigSource(tmp_path / "configs", reader))
    write_source(served.config, **weather(upstream.url))
    served.start().ready()
    assert reader.reads == ["thread"]  # the start-up jobs sync
    reader.reads.clear()

    response = served.post("/api/v1/triggers/job/weather-api")
    assert response.status_code == 200 and response.json()["status"] == "succeeded"
    assert reader.reads == ["thread"]

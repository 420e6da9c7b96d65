"""The DAPR sidecar emulator itself: every route's success and error answers, over real loopback HTTP.

The expected bodies are daprd's (see the module docstring of ``tests/emulators/dapr.py`` for the sources).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from pullctl.asgi import BackgroundServer, serve_in_thread
from tests.emulators import dapr as dapr_module
from tests.emulators.dapr import VALUE_TYPE_URL, DaprEmulator, JobTriggerResult, RecordedRequest

dapr_emulator = dapr_module.dapr_emulator  # the fixture, under its own name

NO_APP_ID = {
    "errorCode": "ERR_DIRECT_INVOKE",
    "message": "failed getting app id either from the URL path or the header dapr-app-id",
}


def client(emulator: DaprEmulator, **kwargs: Any) -> httpx.Client:
    kwargs.setdefault("timeout", 10)
    return httpx.Client(base_url=emulator.url, trust_env=False, **kwargs)


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["errorCode"]
    return code


# --------------------------------------------------------------------------------------------------------
# A small app to invoke and to receive job triggers


class EchoApp:
    """Answers every path with what it received; ``/job/{name}`` records triggers; ``/stream`` streams."""

    def __init__(self) -> None:
        self.triggers: list[tuple[str, bytes, str | None]] = []
        self.job_status = 200
        self.gate = threading.Event()
        self.app = Starlette(
            routes=[
                Route("/job/{name}", self.job, methods=["POST"]),
                Route("/stream", self.stream),
                Route("/fail", self.fail, methods=["GET", "POST"]),
                Route("/{path:path}", self.echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
            ]
        )

    async def echo(self, request: Request) -> Response:
        body = await request.body()
        payload = {
            "method": request.method,
            "path": request.url.path,
            "raw_path": request.scope["raw_path"].decode(),
            "query": request.url.query,
            "headers": {name: request.headers[name] for name in request.headers},
            "body": body.decode(),
        }
        return JSONResponse(payload, headers={"mcp-session-id": "session-42", "x-app": "echo"})

    async def job(self, request: Request) -> Response:
        body = await request.body()
        self.triggers.append((request.path_params["name"], body, request.headers.get("content-type")))
        return Response(b"done", status_code=self.job_status)

    async def fail(self, request: Request) -> Response:
        return JSONResponse({"error": "unavailable"}, status_code=503, headers={"retry-after": "7"})

    async def stream(self, request: Request) -> Response:
        async def events() -> AsyncIterator[bytes]:
            yield b"data: first\n\n"
            await anyio.to_thread.run_sync(self.gate.wait)
            yield b"data: second\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture
def echo_app() -> Iterator[tuple[EchoApp, BackgroundServer]]:
    app = EchoApp()
    with serve_in_thread(app.app) as server:
        try:
            yield app, server
        finally:
            app.gate.set()  # release any stream still waiting, so the server can stop


# --------------------------------------------------------------------------------------------------------
# Lifecycle, health, metadata, shutdown, recording


def test_fixture_gives_a_running_sidecar(dapr_emulator: DaprEmulator) -> None:
    assert dapr_emulator.url.startswith("http://127.0.0.1:")
    with client(dapr_emulator) as http:
        assert http.get("/v1.0/healthz").status_code == 204
        assert http.get("/v1.0/healthz/outbound").status_code == 204


def test_url_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="start"):
        _ = DaprEmulator().url


def test_metadata_names_the_app_and_the_components() -> None:
    dapr = DaprEmulator(app_id="pullctl-serve", secrets={"vault": {}}, pubsubs={"events"})
    with dapr, client(dapr) as http:
        response = http.get("/v1.0/metadata")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "pullctl-serve"
    assert body["runtimeVersion"] == "1.18"
    assert {(c["name"], c["type"].split(".")[0]) for c in body["components"]} == {
        ("events", "pubsub"),
        ("vault", "secretstores"),
    }


def test_shutdown_is_counted(dapr_emulator: DaprEmulator) -> None:
    with client(dapr_emulator) as http:
        assert http.post("/v1.0/shutdown").status_code == 204
        assert http.post("/v1.0/shutdown").status_code == 204
        # Only POST is routed; anything else falls through to service invocation, as in daprd.
        wrong = http.get("/v1.0/shutdown")
    assert dapr_emulator.shutdown_called == 2
    assert wrong.status_code == 404
    assert wrong.json() == NO_APP_ID


def test_requests_are_recorded_and_reset_clears_state(dapr_emulator: DaprEmulator) -> None:
    with client(dapr_emulator) as http:
        http.post("/v1.0/publish/pubsub/t?metadata.ttlInSeconds=5", json={"a": 1})
        http.post("/v1.0/jobs/j", json={"schedule": "@daily"})
        http.post("/v1.0/shutdown")
    method, path, headers, body = dapr_emulator.requests[0]
    assert (method, path) == ("POST", "/v1.0/publish/pubsub/t")
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"a": 1}
    assert isinstance(dapr_emulator.requests[0], RecordedRequest)
    assert dapr_emulator.requests[0].query == "metadata.ttlInSeconds=5"
    dapr_emulator.publish_down = True

    dapr_emulator.reset()

    assert dapr_emulator.requests == []
    assert dapr_emulator.published == []
    assert dapr_emulator.jobs == {}
    assert dapr_emulator.shutdown_called == 0
    assert dapr_emulator.publish_down is False


# --------------------------------------------------------------------------------------------------------
# API token


def test_api_token_guards_every_route_but_the_health_checks(
    echo_app: tuple[EchoApp, BackgroundServer],
) -> None:
    _, app_server = echo_app
    with DaprEmulator(api_token="t0ken", apps={"echo": app_server.url}) as dapr, client(dapr) as http:
        refused = http.post("/v1.0/shutdown")
        wrong = http.get("/v1.0/metadata", headers={"dapr-api-token": "nope"})
        health = http.get("/v1.0/healthz")
        outbound = http.get("/v1.0/healthz/outbound")
        allowed = http.post("/v1.0/shutdown", headers={"dapr-api-token": "t0ken"})
        invoked = http.get("/v1.0/invoke/echo/method/x", headers={"dapr-api-token": "t0ken"})
    assert refused.status_code == 401
    assert refused.text == "invalid api token\n"
    assert refused.headers["content-type"] == "text/plain; charset=utf-8"
    assert wrong.status_code == 401
    assert (health.status_code, outbound.status_code, allowed.status_code) == (204, 204, 204)
    # daprd's auth middleware removes the token before the request goes on to the app.
    assert invoked.status_code == 200
    assert "dapr-api-token" not in invoked.json()["headers"]


# --------------------------------------------------------------------------------------------------------
# Secrets


@pytest.fixture
def secret_sidecar() -> Iterator[DaprEmulator]:
    secrets: dict[str, dict[str, str | dict[str, str]]] = {
        "vault": {"api-key": "s3cret", "db": {"user": "u", "password": "p"}},
        "other": {},
    }
    with DaprEmulator(secrets=secrets) as dapr:
        yield dapr


def test_secret_is_returned_as_a_map(secret_sidecar: DaprEmulator) -> None:
    with client(secret_sidecar) as http:
        single = http.get("/v1.0/secrets/vault/api-key")
        multi = http.get("/v1.0/secrets/vault/db")
    assert single.status_code == 200
    assert single.headers["content-type"] == "application/json"
    assert single.json() == {"api-key": "s3cret"}
    assert multi.json() == {"user": "u", "password": "p"}


def test_bulk_secrets(secret_sidecar: DaprEmulator) -> None:
    with client(secret_sidecar) as http:
        response = http.get("/v1.0/secrets/vault/bulk")
    assert response.status_code == 200
    assert response.json() == {"api-key": {"api-key": "s3cret"}, "db": {"user": "u", "password": "p"}}


def test_missing_secret_is_500_err_secret_get(secret_sidecar: DaprEmulator) -> None:
    with client(secret_sidecar) as http:
        response = http.get("/v1.0/secrets/vault/nope")
    assert response.status_code == 500
    assert response.json() == {
        "errorCode": "ERR_SECRET_GET",
        "message": "failed getting secret with key nope from secret store vault: secret nope not found",
    }


def test_unknown_secret_store_is_401(secret_sidecar: DaprEmulator) -> None:
    with client(secret_sidecar) as http:
        response = http.get("/v1.0/secrets/kubernetes/api-key")
        bulk = http.get("/v1.0/secrets/kubernetes/bulk")
    assert response.status_code == 401
    assert response.json() == {
        "errorCode": "ERR_SECRET_STORE_NOT_FOUND",
        "message": "failed finding secret store with key kubernetes",
    }
    assert bulk.status_code == 401


def test_no_secret_store_at_all_is_500(dapr_emulator: DaprEmulator) -> None:
    with client(dapr_emulator) as http:
        response = http.get("/v1.0/secrets/vault/api-key")
    assert response.status_code == 500
    assert response.json() == {
        "errorCode": "ERR_SECRET_STORES_NOT_CONFIGURED",
        "message": "secret store is not configured",
    }


def test_secrets_can_change_while_running(dapr_emulator: DaprEmulator) -> None:
    dapr_emulator.secrets["vault"] = {"k": "v"}
    with client(dapr_emulator) as http:
        assert http.get("/v1.0/secrets/vault/k").json() == {"k": "v"}


# --------------------------------------------------------------------------------------------------------
# Pub/sub


def test_publish_records_the_message(dapr_emulator: DaprEmulator) -> None:
    with client(dapr_emulator) as http:
        response = http.post(
            "/v1.0/publish/pubsub/raw-documents",
            params={"metadata.cloudevent.id": "doc-1", "other": "x"},
            json={"document_id": "doc-1", "size_bytes": 12},
        )
    assert response.status_code == 204
    assert response.content == b""
    [message] = dapr_emulator.published
    assert (message.pubsub, message.topic) == ("pubsub", "raw-documents")
    assert message.content_type == "application/json"
    assert message.metadata == {"cloudevent.id": "doc-1"}
    assert message.data == {"document_id": "doc-1", "size_bytes": 12}


def test_publish_without_content_type_is_text_plain(dapr_emulator: DaprEmulator) -> None:
    with client(dapr_emulator) as http:
        assert http.put("/v1.0/publish/pubsub/a/b/c", content=b"hello").status_code == 204
    [message] = dapr_emulator.published
    assert message.topic == "a/b/c"
    assert message.content_type == "text/plain"
    assert message.data == "hello"


def test_publish_to_an_unknown_pubsub_is_404(dapr_emulator: DaprEmulator) -> None:
    with client(dapr_emulator) as http:
        response = http.post("/v1.0/publish/nope/topic", json={})
    assert response.status_code == 404
    body = response.json()
    assert body["errorCode"] == "ERR_PUBSUB_NOT_FOUND"
    assert body["message"] == "pubsub nope not found"
    assert body["details"][0]["reason"] == "DAPR_PUBSUB_NOT_FOUND"
    assert dapr_emulator.published == []


def test_publish_without_any_pubsub_is_400() -> None:
    with DaprEmulator(pubsubs=()) as dapr, client(dapr) as http:
        response = http.post("/v1.0/publish/pubsub/topic", json={})
    assert response.status_code == 400
    assert error_code(response) == "ERR_PUBSUB_NOT_CONFIGURED"


def test_publish_failures_fail_the_next_publishes(dapr_emulator: DaprEmulator) -> None:
    dapr_emulator.publish_failures = 2
    with client(dapr_emulator) as http:
        statuses = [http.post("/v1.0/publish/pubsub/t", json={"n": n}) for n in range(3)]
    assert [r.status_code for r in statuses] == [500, 500, 204]
    body = statuses[0].json()
    assert body["errorCode"] == "ERR_PUBSUB_PUBLISH_MESSAGE"
    assert body["message"].startswith("error when publishing to topic t in pubsub pubsub: ")
    assert [m.data for m in dapr_emulator.published] == [{"n": 2}]
    assert dapr_emulator.publish_failures == 0


def test_publish_down_fails_until_switched_back(dapr_emulator: DaprEmulator) -> None:
    dapr_emulator.publish_down = True
    with client(dapr_emulator) as http:
        assert http.post("/v1.0/publish/pubsub/t", json={}).status_code == 500
        assert http.post("/v1.0/publish/pubsub/t", json={}).status_code == 500
        dapr_emulator.publish_down = False
        assert http.post("/v1.0/publish/pubsub/t", json={}).status_code == 204
    assert len(dapr_emulator.published) == 1


# --------------------------------------------------------------------------------------------------------
# Jobs


@pytest.mark.parametrize("prefix", ["/v1.0", "/v1.0-alpha1"])
def test_job_roundtrip_on_1_18(dapr_emulator: DaprEmulator, prefix: str) -> None:
    job = {
        "schedule": "0 0 6 * * *",
        "repeats": 3,
        "dueTime": "10s",
        "ttl": "2030-01-01T00:00:00Z",
        "data": {"source_id": "weather-api", "config_hash": "abc"},
        "failurePolicy": {"constant": {"interval": "10s", "maxRetries": 3}},
        "overwrite": True,
    }
    with client(dapr_emulator) as http:
        created = http.post(f"{prefix}/jobs/pull-weather-api", json=job)
        fetched = http.get(f"{prefix}/jobs/pull-weather-api")
        deleted = http.delete(f"{prefix}/jobs/pull-weather-api")
        gone = http.get(f"{prefix}/jobs/pull-weather-api")
    assert created.status_code == 204
    assert created.content == b""
    assert fetched.status_code == 200
    assert fetched.json() == {
        "name": "pull-weather-api",
        "schedule": "0 0 6 * * *",
        "repeats": 3,
        "dueTime": "10s",
        "ttl": "2030-01-01T00:00:00Z",
        "data": {"@type": VALUE_TYPE_URL, "value": {"source_id": "weather-api", "config_hash": "abc"}},
        "failurePolicy": {"constant": {"interval": "10s", "maxRetries": 3}},
    }
    assert deleted.status_code == 204
    assert gone.status_code == 500
    assert dapr_emulator.jobs == {}


def test_jobs_dict_holds_plain_data(dapr_emulator: DaprEmulator) -> None:
    with client(dapr_emulator) as http:
        http.post("/v1.0/jobs/j", json={"schedule": "@every 1h30m", "data": {"source_id": "s"}})
    assert dapr_emulator.jobs["j"] == {"name": "j", "schedule": "@every 1h30m", "data": {"source_id": "s"}}


def test_protojson_snake_case_fields_are_accepted(dapr_emulator: DaprEmulator) -> None:
    body = {"due_time": "5s", "failure_policy": {"constant": {"max_retries": 2}}, "unknown": 1}
    with client(dapr_emulator) as http:
        assert http.post("/v1.0/jobs/j", json=body).status_code == 204
        fetched = http.get("/v1.0/jobs/j").json()
    assert fetched == {"name": "j", "dueTime": "5s", "failurePolicy": {"constant": {"maxRetries": 2}}}


def test_get_of_a_missing_job_is_500(dapr_emulator: DaprEmulator) -> None:
    with client(dapr_emulator) as http:
        response = http.get("/v1.0/jobs/notfound")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["errorCode"] == "DAPR_SCHEDULER_GET_JOB"
    assert "failed to get job" in body["message"]
    assert body["details"] == [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "DAPR_SCHEDULER_GET_JOB",
            "domain": "dapr.io",
            "metadata": {"appID": "pullctl", "namespace": ""},
        }
    ]


def test_delete_of_a_missing_job_is_204(dapr_emulator: DaprEmulator) -> None:
    with client(dapr_emulator) as http:
        assert http.delete("/v1.0/jobs/notfound").status_code == 204
        assert http.delete("/v1.0-alpha1/jobs/notfound").status_code == 204


def test_name_in_the_body_is_400(dapr_emulator: DaprEmulator) -> None:
    with client(dapr_emulator) as http:
        response = http.post("/v1.0/jobs/test", json={"name": "test1", "schedule": "@daily"})
    assert response.status_code == 400
    assert response.json()["errorCode"] == "DAPR_SCHEDULER_JOB_NAME"
    assert response.json()["message"] == "Set the job name in the url only"
    assert dapr_emulator.jobs == {}


def test_job_without_schedule_or_due_time_is_400(dapr_emulator: DaprEmulator) -> None:
    with client(dapr_emulator) as http:
        response = http.post("/v1.0/jobs/test", json={"data": 1})
    assert response.status_code == 400
    assert response.json()["errorCode"] == "DAPR_SCHEDULER_SCHEDULE_EMPTY"
    assert response.json()["message"] == "Schedule is empty"


def test_existing_job_without_overwrite_is_409(dapr_emulator: DaprEmulator) -> None:
    with client(dapr_emulator) as http:
        assert http.post("/v1.0/jobs/j", json={"schedule": "@daily"}).status_code == 204
        conflict = http.post("/v1.0/jobs/j", json={"schedule": "@weekly"})
        explicit_false = http.post("/v1.0/jobs/j", json={"schedule": "@weekly", "overwrite": False})
        assert http.get("/v1.0/jobs/j").json()["schedule"] == "@daily"
        replaced = http.post("/v1.0/jobs/j", json={"schedule": "@weekly", "overwrite": True})
    assert conflict.status_code == 409
    assert explicit_false.status_code == 409
    assert error_code(conflict) == "DAPR_SCHEDULER_SCHEDULE_JOB"
    assert replaced.status_code == 204
    assert dapr_emulator.jobs["j"]["schedule"] == "@weekly"


def test_1_17_serves_only_the_alpha_jobs_api() -> None:
    with DaprEmulator(version="1.17") as dapr, client(dapr) as http:
        stable_post = http.post("/v1.0/jobs/j", json={"schedule": "@daily"})
        stable_get = http.get("/v1.0/jobs/j")
        stable_delete = http.delete("/v1.0/jobs/j")
        alpha = http.post("/v1.0-alpha1/jobs/j", json={"schedule": "@daily"})
        conflict = http.post("/v1.0-alpha1/jobs/j", json={"schedule": "@daily"})
        missing = http.get("/v1.0-alpha1/jobs/other")
    # The unknown route falls through to service invocation, which finds no app id.
    for response in (stable_post, stable_get, stable_delete):
        assert response.status_code == 404
        assert response.json() == NO_APP_ID
    assert alpha.status_code == 204
    assert conflict.status_code == 409
    assert missing.status_code == 500
    assert list(dapr.jobs) == ["j"]


def test_before_1_16_an_existing_job_is_overwritten() -> None:
    with DaprEmulator(version="1.15") as dapr, client(dapr) as http:
        assert http.post("/v1.0-alpha1/jobs/j", json={"schedule": "@daily"}).status_code == 204
        assert http.post("/v1.0-alpha1/jobs/j", json={"schedule": "@weekly"}).status_code == 204
    assert dapr.jobs["j"]["schedule"] == "@weekly"


@pytest.mark.parametrize(
    "schedule",
    [
        "0 0 6 * * *",
        "*/15 * * * * *",
        "0 30 9-17 * * mon-fri",
        "0 0 0 1 jan,jul ?",
        "0 0 12 ? * 0",
        "@every 1h30m",
        "@every 500ms",
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
        "CRON_TZ=Europe/Berlin 0 0 6 * * *",
        "CRON_TZ=Etc/UTC @daily",
    ],
)
def test_valid_schedules(dapr_emulator: DaprEmulator, schedule: str) -> None:
    with client(dapr_emulator) as http:
        response = http.post("/v1.0/jobs/j", json={"schedule": schedule})
    assert response.status_code == 204, response.text


@pytest.mark.parametrize(
    "schedule",
    [
        "0 6 * * *",  # 5 fields: the Kubernetes dialect
        "0 0 6 * * * *",
        "60 0 6 * * *",
        "0 0 24 * * *",
        "0 0 0 0 * *",
        "0 0 0 1 13 *",
        "0 0 0 * * 7",
        "0 0 0 * * funday",
        "0 0 5-1 * * *",
        "*/0 * * * * *",
        "? * * * * *",
        "@every",
        "@every 1 hour",
        "@every -5m",
        "@fortnightly",
        "CRON_TZ=Mars/Olympus 0 0 6 * * *",
        "every day",
        "",
    ],
)
def test_invalid_schedules_are_rejected(dapr_emulator: DaprEmulator, schedule: str) -> None:
    with client(dapr_emulator) as http:
        response = http.post("/v1.0/jobs/j", json={"schedule": schedule})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["errorCode"] == "DAPR_SCHEDULER_SCHEDULE_JOB"
    assert "job failed validation" in body["message"]
    assert dapr_emulator.jobs == {}


@pytest.mark.parametrize("field", ["dueTime", "ttl"])
def test_invalid_due_time_or_ttl_is_rejected(dapr_emulator: DaprEmulator, field: str) -> None:
    with client(dapr_emulator) as http:
        response = http.post("/v1.0/jobs/j", json={"schedule": "@daily", field: "tomorrow"})
        iso = http.post("/v1.0/jobs/k", json={"schedule": "@daily", field: "PT1H30M"})
    assert response.status_code == 400
    assert iso.status_code == 204


def test_invalid_schedule_status_is_configurable() -> None:
    with DaprEmulator(invalid_schedule_status=500) as dapr, client(dapr) as http:
        response = http.post("/v1.0/jobs/j", json={"schedule": "0 6 * * *"})
    assert response.status_code == 500
    assert error_code(response) == "DAPR_SCHEDULER_SCHEDULE_JOB"
    assert "expected exactly 6 fields, found 5" in response.json()["message"]


def test_cron_tz_needs_1_18() -> None:
    with DaprEmulator(version="1.17") as dapr, client(dapr) as http:
        response = http.post("/v1.0-alpha1/jobs/j", json={"schedule": "CRON_TZ=Europe/Berlin 0 0 6 * * *"})
    assert response.status_code == 400
    assert "expected exactly 6 fields, found 7" in response.json()["message"]


def test_malformed_job_body_is_400(dapr_emulator: DaprEmulator) -> None:
    with client(dapr_emulator) as http:
        not_json = http.post("/v1.0/jobs/j", content=b"{", headers={"content-type": "application/json"})
        bad_repeats = http.post("/v1.0/jobs/j", json={"schedule": "@daily", "repeats": "many"})
    assert not_json.status_code == 400
    assert error_code(not_json) == "ERR_MALFORMED_REQUEST"
    assert bad_repeats.status_code == 400


# --------------------------------------------------------------------------------------------------------
# Job triggers


def test_trigger_posts_the_data_to_the_app(
    dapr_emulator: DaprEmulator, echo_app: tuple[EchoApp, BackgroundServer]
) -> None:
    app, app_server = echo_app
    dapr_emulator.job_app_url = app_server.url
    data = {"source_id": "weather-api", "config_hash": "abc"}
    with client(dapr_emulator) as http:
        http.post("/v1.0/jobs/pull-weather-api", json={"schedule": "@daily", "data": data})

    result = dapr_emulator.trigger_sync("pull-weather-api")

    assert result == JobTriggerResult(200, b"done")
    assert result.status == 200
    [(name, body, content_type)] = app.triggers
    assert name == "pull-weather-api"
    assert json.loads(body) == data
    assert content_type == "application/json"


def test_async_trigger_returns_the_app_status(
    dapr_emulator: DaprEmulator, echo_app: tuple[EchoApp, BackgroundServer]
) -> None:
    app, app_server = echo_app
    app.job_status = 409
    dapr_emulator.job_app_url = app_server.url
    dapr_emulator.jobs["j"] = {"name": "j", "schedule": "@daily", "data": "hello"}

    status, body = asyncio.run(dapr_emulator.trigger("j"))

    assert (status, body) == (409, b"done")
    assert app.triggers == [("j", b'"hello"', "application/json")]


def test_trigger_needs_a_job_and_an_app(dapr_emulator: DaprEmulator) -> None:
    with pytest.raises(RuntimeError, match="job_app_url"):
        dapr_emulator.trigger_sync("j")
    dapr_emulator.job_app_url = "http://127.0.0.1:9"
    with pytest.raises(LookupError, match="no DAPR job named 'j'"):
        dapr_emulator.trigger_sync("j")


# --------------------------------------------------------------------------------------------------------
# Service invocation


def test_invoke_passes_method_path_query_headers_and_body(
    dapr_emulator: DaprEmulator, echo_app: tuple[EchoApp, BackgroundServer]
) -> None:
    _, app_server = echo_app
    dapr_emulator.apps["echo"] = app_server.url
    headers = {
        "Mcp-Session-Id": "abc",
        "MCP-Protocol-Version": "2025-11-25",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "X-Custom": "1",
    }
    with client(dapr_emulator) as http:
        response = http.put("/v1.0/invoke/echo/method/a/b%2Fc?x=1&y=two", headers=headers, content=b'{"k":1}')
    assert response.status_code == 200
    assert response.headers["mcp-session-id"] == "session-42"
    assert response.headers["x-app"] == "echo"
    assert response.headers["content-type"] == "application/json"
    echoed = response.json()
    assert echoed["method"] == "PUT"
    assert echoed["raw_path"] == "/a/b%2Fc"
    assert echoed["query"] == "x=1&y=two"
    assert echoed["body"] == '{"k":1}'
    for name, value in headers.items():
        assert echoed["headers"][name.lower()] == value
    assert echoed["headers"]["host"] == app_server.url.removeprefix("http://")


def test_invoke_by_dapr_app_id_header(
    dapr_emulator: DaprEmulator, echo_app: tuple[EchoApp, BackgroundServer]
) -> None:
    _, app_server = echo_app
    dapr_emulator.apps["echo"] = app_server.url
    with client(dapr_emulator) as http:
        response = http.post("/mcp?z=9", headers={"dapr-app-id": "echo"}, content=b"x")
        # A routed DAPR API path is served by the sidecar, header or not.
        health = http.get("/v1.0/healthz", headers={"dapr-app-id": "echo"})
    assert response.status_code == 200
    assert (response.json()["path"], response.json()["query"]) == ("/mcp", "z=9")
    assert health.status_code == 204


def test_invoke_returns_app_errors_as_they_are(
    dapr_emulator: DaprEmulator, echo_app: tuple[EchoApp, BackgroundServer]
) -> None:
    _, app_server = echo_app
    dapr_emulator.apps["echo"] = app_server.url
    with client(dapr_emulator) as http:
        response = http.post("/v1.0/invoke/echo/method/fail")
    assert response.status_code == 503
    assert response.json() == {"error": "unavailable"}
    assert response.headers["retry-after"] == "7"


def test_invoke_of_an_unknown_app_is_500(dapr_emulator: DaprEmulator) -> None:
    with client(dapr_emulator) as http:
        response = http.get("/v1.0/invoke/nobody/method/mcp")
    assert response.status_code == 500
    assert response.json() == {
        "errorCode": "ERR_DIRECT_INVOKE",
        "message": "failed to invoke, id: nobody, err: couldn't find service: nobody",
    }


def test_invoke_of_an_app_that_is_down_is_500(dapr_emulator: DaprEmulator) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago refuses connections now
        probe.bind(("127.0.0.1", 0))
        dapr_emulator.apps["down"] = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with client(dapr_emulator) as http:
        response = http.get("/v1.0/invoke/down/method/x")
    assert response.status_code == 500
    assert error_code(response) == "ERR_DIRECT_INVOKE"
    assert response.json()["message"].startswith("failed to invoke, id: down, err: ")


@pytest.mark.parametrize(
    "path", ["/v1.0/invoke/", "/v1.0/invoke/echo", "/no/such/route", "/v1.0/publish/pubsub"]
)
def test_no_app_id_is_404(dapr_emulator: DaprEmulator, path: str) -> None:
    with client(dapr_emulator) as http:
        response = http.get(path)
    assert response.status_code == 404
    assert response.json() == NO_APP_ID


def test_invoke_streams_the_response(
    dapr_emulator: DaprEmulator, echo_app: tuple[EchoApp, BackgroundServer]
) -> None:
    app, app_server = echo_app
    dapr_emulator.apps["echo"] = app_server.url
    with (
        client(dapr_emulator, timeout=httpx.Timeout(5.0)) as http,
        http.stream("GET", "/v1.0/invoke/echo/method/stream") as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = response.iter_raw()
        # The app holds the second event back until the first one has arrived: a buffering
        # proxy would never deliver the first, and this read would time out.
        assert next(chunks) == b"data: first\n\n"
        app.gate.set()
        assert b"".join(chunks) == b"data: second\n\n"


def test_stop_ends_open_streams(echo_app: tuple[EchoApp, BackgroundServer]) -> None:
    _, app_server = echo_app
    dapr = DaprEmulator(apps={"echo": app_server.url}).start()
    with (
        client(dapr, timeout=httpx.Timeout(5.0)) as http,
        http.stream("GET", "/v1.0/invoke/echo/method/stream") as response,
    ):
        chunks = response.iter_raw()
        assert next(chunks) == b"data: first\n\n"
        started = time.monotonic()
        dapr.stop()
        assert time.monotonic() - started < 5
        assert b"".join(chunks) == b""


# --------------------------------------------------------------------------------------------------------
# MCP through service invocation


@pytest.fixture
def mcp_server() -> Iterator[BackgroundServer]:
    from mcp.server.mcpserver import MCPServer

    server: MCPServer = MCPServer("plantation-mcp")

    @server.tool()
    def list_active_regions(country: str = "KE") -> list[dict[str, Any]]:
        """The active regions of a country."""
        return [
            {"id": f"{country}-1", "latitude": -0.42, "longitude": 36.95},
            {"id": f"{country}-2", "latitude": -1.29, "longitude": 36.82},
        ]

    with serve_in_thread(server.streamable_http_app()) as running:
        yield running


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_mcp_client_reaches_a_server_through_invoke(
    dapr_emulator: DaprEmulator, mcp_server: BackgroundServer, mode: str
) -> None:
    from mcp import Client

    dapr_emulator.apps["myapp"] = mcp_server.url

    async def call() -> Any:
        async with Client(f"{dapr_emulator.url}/v1.0/invoke/myapp/method/mcp", mode=mode) as mcp:
            return await mcp.call_tool("list_active_regions", {"country": "UG"})

    result = anyio.run(call)

    assert result.is_error is False
    assert result.structured_content == {
        "result": [
            {"id": "UG-1", "latitude": -0.42, "longitude": 36.95},
            {"id": "UG-2", "latitude": -1.29, "longitude": 36.82},
        ]
    }
    invoked = [r for r in dapr_emulator.requests if r.path == "/v1.0/invoke/myapp/method/mcp"]
    assert invoked
    assert all("mcp-protocol-version" in r.headers for r in invoked[1:])
    if mode == "legacy":
        # The initialize handshake's session id came back through the proxy and went out again.
        assert any("mcp-session-id" in r.headers for r in invoked)

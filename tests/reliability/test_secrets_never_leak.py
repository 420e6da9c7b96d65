"""A known secret, in the environment and in the DAPR secret store, never appears in any output stream,
log line, run record, stored document, event, rendered or applied manifest, HTTP answer or exception text,
plain, URL-encoded or base64-encoded: for every command, with failures forced at each stage.

The same value also stands for the other credentials pullctl holds (the kubeconfig token, DAPR_API_TOKEN,
APP_API_TOKEN, a MongoDB password): where the user passed it, pullctl never echoes it.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from pymongo import MongoClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pullctl.asgi import serve_in_thread
from tests.conftest import Cli
from tests.emulators.dapr import DaprEmulator
from tests.emulators.kube import KubeEmulator
from tests.runkit import Runner, write_source
from tests.servers.oauth import OAuthServer
from tests.servers.upstream import Upstream
from tests.test_serve import Served, free_port, wait_for

SECRET = "s3cr3t/Value+with=odd&chars"
HEADER_SECRET = "hdr+t0ken/%2F=x"  # a second, named secret (SOURCES.md §2) that travels in a header
FORMS = {
    form
    for value in (SECRET, HEADER_SECRET)
    for form in (
        value,
        quote(value, safe=""),
        quote_plus(value),
        quote_plus(value, safe="!$'()*,/:?@"),  # as the aiohttp transport sends a query value
        base64.b64encode(value.encode()).decode(),
    )
}
SECRET_ENV = {"PULLCTL_SECRET_VAULT_API_KEY": SECRET}
# The API key goes in the query string: the form most likely to end up in a logged URL.
AUTH = {
    "auth_type": "api_key",
    "auth_query_param": "api_key",
    "secret_store": "vault",
    "secret_key": "api-key",
}
RETRY = {"max_attempts": 2, "initial_delay_seconds": 0.01}


def _assert_clean(*texts: str | bytes) -> None:
    for text in texts:
        blob = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        for form in FORMS:
            assert form not in blob, f"secret leaked as {form!r}"


def _streams(*results: Any) -> list[str]:
    """stdout and stderr of CLI results."""
    return [text for r in results for text in (r.stdout, r.stderr)]


def write_keyed(
    folder: Path,
    base_url: str,
    source_id: str = "keyed",
    parameters: dict[str, str] | None = None,
    **ingestion: Any,
) -> Path:
    request = {"base_url": base_url, **AUTH, "parameters": parameters or {}}
    return write_source(folder, source_id, request=request, **ingestion)


@pytest.fixture
def dapr_with_secret(dapr_emulator: DaprEmulator) -> DaprEmulator:
    dapr_emulator.secrets = {"vault": {"api-key": SECRET}}
    return dapr_emulator


# ---------------------------------------------------------------------------------------------------------
# run: every stage of a pull


@pytest.mark.parametrize("fail", [None, "status-500", "status-401", "redirect_loop", "html"])
@pytest.mark.parametrize("where", ["env", "dapr"])
def test_run_never_prints_or_stores_the_secret(
    cli: Cli, tmp_path: Path, upstream: Upstream, dapr_emulator: DaprEmulator, fail: str | None, where: str
) -> None:
    upstream.api_key = SECRET
    env = {"DAPR_HTTP_ENDPOINT": dapr_emulator.url, "PULLCTL_EVENTS": "dapr://pubsub/t"}
    if where == "env":
        env.update(SECRET_ENV)
    else:
        dapr_emulator.secrets = {"vault": {"api-key": SECRET}}
    runner = Runner(cli, tmp_path, env)
    write_keyed(runner.config, f"{upstream.url}/auth/api-key-query", retry=RETRY)
    if fail:
        kind, _, status = fail.partition("-")
        upstream.fail("/auth/api-key-query", kind, **({"status": int(status)} if status else {}))
    result = runner("run", "keyed", "--output", "json")
    text = runner("run", "keyed", "--dry-run")
    assert result.exit_code == (0 if fail is None else 1), result.stdout
    _assert_clean(result.stdout, result.stderr, text.stdout, text.stderr, runner.db.read_bytes())
    _assert_clean(*(m.body for m in dapr_emulator.published))
    _assert_clean(runner("runs", "--output", "json").stdout)


# Two named secrets instead of auth_type: one in a query parameter, one in a header.
NAMED = {
    "key": {"secret_store": "vault", "secret_key": "api-key"},
    "header_token": {"secret_store": "azure-kv", "secret_key": "header-token"},
}
NAMED_ENV = {**SECRET_ENV, "PULLCTL_SECRET_AZURE_KV_HEADER_TOKEN": HEADER_SECRET}


@pytest.mark.parametrize("fail", [None, "echo-query", "echo-header-secret", "status-500", "redirect_loop"])
@pytest.mark.parametrize("where", ["env", "dapr"])
def test_named_secrets_are_masked_in_every_output(
    cli: Cli, tmp_path: Path, upstream: Upstream, dapr_emulator: DaprEmulator, fail: str | None, where: str
) -> None:
    """The forecast endpoint answers 400 naming the bad value it got: echo-query puts the query secret in
    ``latitude``, echo-header-secret the header's secret in ``hourly`` too (so the server echoes it back)."""
    env = {"DAPR_HTTP_ENDPOINT": dapr_emulator.url, "PULLCTL_EVENTS": "dapr://pubsub/t"}
    if where == "env":
        env.update(NAMED_ENV)
    else:
        dapr_emulator.secrets = {"vault": {"api-key": SECRET}, "azure-kv": {"header-token": HEADER_SECRET}}
    parameters = {"latitude": "52.5", "longitude": "13.4", "key": "{secret.key}"}
    if fail == "echo-query":
        parameters["latitude"] = "{secret.key}"
    if fail == "echo-header-secret":
        parameters["hourly"] = "{secret.header_token}"
    runner = Runner(cli, tmp_path, env)
    request = {
        "base_url": f"{upstream.url}/v1/forecast",
        "parameters": parameters,
        "headers": {"X-Token": "{secret.header_token}"},
    }
    write_source(runner.config, "keyed", secrets=NAMED, request=request, retry=RETRY)
    if fail in ("status-500", "redirect_loop"):
        kind, _, status = fail.partition("-")
        upstream.fail("/v1/forecast", kind, **({"status": int(status)} if status else {}))
    result = runner("run", "keyed", "--output", "json")
    dry = runner("run", "keyed", "--dry-run", PULLCTL_LOG_FORMAT="text")
    assert result.exit_code == (0 if fail is None else 1), result.stderr
    assert upstream.requests[0].headers["x-token"] == HEADER_SECRET
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    if fail is None:
        [doc] = runner.documents("keyed")
        assert doc["request"]["url"].endswith("/v1/forecast?latitude=52.5&longitude=13.4&key=***")
        assert json.loads(dry.stdout)["request"]["url"] == doc["request"]["url"]
    elif fail.startswith("echo"):
        assert record["errors"][0]["message"].endswith(
            "invalid String value *** for key " + ("latitude" if fail == "echo-query" else "hourly") + '"}'
        )
    _assert_clean(result.stdout, result.stderr, dry.stdout, dry.stderr, runner.db.read_bytes())
    _assert_clean(*(m.body for m in dapr_emulator.published), runner("runs", "--output", "json").stdout)


@pytest.mark.parametrize("stage", ["secret", "iteration", "events"])
def test_run_failing_at_the_other_stages_never_prints_the_secret(
    cli: Cli, tmp_path: Path, upstream: Upstream, dapr_emulator: DaprEmulator, stage: str
) -> None:
    """secret: a DAPR secret with several keys, none the one asked for (the error lists keys, not values);
    iteration: the MCP server is not there; events: the pub/sub is down, then back (the outbox)."""
    upstream.api_key = SECRET
    env = {"DAPR_HTTP_ENDPOINT": dapr_emulator.url, "PULLCTL_EVENTS": "dapr://pubsub/t"}
    iteration: dict[str, Any] = {"foreach": "region", "items": [{"region_id": "r1"}], "key": "region_id"}
    if stage == "secret":
        dapr_emulator.secrets = {"vault": {"api-key": {"token": SECRET, "previous": SECRET}}}
    else:
        env.update(SECRET_ENV)
    if stage == "iteration":
        iteration = {
            "foreach": "region",
            "source_mcp": "plantation-mcp",
            "source_tool": "list_active_regions",
        }
        env["PULLCTL_MCP_URL_PLANTATION_MCP"] = f"http://127.0.0.1:{free_port()}/mcp"
    if stage == "events":
        dapr_emulator.publish_down = True
    runner = Runner(cli, tmp_path, env)
    write_keyed(runner.config, f"{upstream.url}/auth/api-key-query", retry=RETRY, iteration=iteration)
    failed = runner("run", "keyed", "--output", "json")
    assert failed.exit_code == (3 if stage == "events" else 1), failed.stderr
    dapr_emulator.publish_down = False
    again = runner("run", "keyed", "--output", "json", PULLCTL_LOG_FORMAT="text")
    _assert_clean(*_streams(failed, again), runner.db.read_bytes())
    _assert_clean(*(m.body for m in dapr_emulator.published))
    if stage == "events":
        assert again.exit_code == 0 and len(dapr_emulator.published) == 1  # the pending event went out


def test_replay_of_a_failed_run_and_runs_never_print_the_secret(
    cli: Cli, tmp_path: Path, upstream: Upstream, dapr_with_secret: DaprEmulator
) -> None:
    upstream.api_key = SECRET
    runner = Runner(cli, tmp_path, {"DAPR_HTTP_ENDPOINT": dapr_with_secret.url})
    items = [{"region_id": "r1"}, {"region_id": "r2"}]
    write_keyed(
        runner.config,
        f"{upstream.url}/auth/api-key-query",
        parameters={"r": "{region.region_id}"},
        retry=RETRY,
        iteration={"foreach": "region", "items": items, "key": "region_id"},
    )
    upstream.fail("/auth/api-key-query", "redirect_loop", query={"r": "r2"})
    upstream.fail("/auth/api-key-query", status=500, query={"r": "r1"}, times=2)
    code, [first], log = runner.run_json("keyed")
    assert code == 1 and sorted(first["failed_items"]) == ["r1", "r2"], log
    replay_failing = runner("run", "keyed", "--replay", first["run_id"], PULLCTL_LOG_FORMAT="text")
    assert replay_failing.exit_code == 3, replay_failing.stderr  # r1 works now, r2 still loops
    upstream.reset()
    code, [replayed], replay_log = runner.run_json("keyed", "--replay", first["run_id"])
    assert code == 0 and replayed["counts"]["fetched"] == 2
    history = [runner("runs"), runner("runs", "keyed", "--output", "json")]
    assert len(json.loads(history[1].stdout)) == 3
    _assert_clean(json.dumps(first), log, *_streams(replay_failing, *history), json.dumps(replayed))
    _assert_clean(replay_log, runner.db.read_bytes())


def test_a_webhook_url_with_credentials_is_masked_in_errors_records_and_logs(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    token = "secret-token"
    forms = {token, quote(token, safe=""), base64.b64encode(token.encode()).decode()}
    calls: list[str] = []

    async def hook(request: Request) -> Response:
        calls.append(request.headers.get("authorization", ""))
        return Response(status_code=500)

    with serve_in_thread(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as server:
        url = server.url.replace("http://", f"http://user:{token}@") + "/hook"
        runner = Runner(cli, tmp_path, {"PULLCTL_EVENTS": url})
        items = [{"id": "a", "lat": 1.0}]
        request = {
            "base_url": f"{upstream.url}/v1/forecast",
            "parameters": {"latitude": "{spot.lat}", "longitude": "0"},
        }
        write_source(
            runner.config,
            "hooked",
            request=request,
            iteration={"foreach": "spot", "items": items, "key": "id"},
        )
        code, [record], log = runner.run_json("hooked")
        text = runner(
            "run", "hooked", PULLCTL_LOG_FORMAT="text"
        )  # the pending event is retried and fails again
        history = runner("runs", "hooked", "--output", "json")
    assert code == 3 and record["events"] == {"sent": 0, "pending": 1}, log
    assert calls and calls[0].startswith("Basic ")  # the credentials went to the webhook, and only there
    masked = url.replace(token, "***")
    assert [e["message"] for e in record["errors"]] == [
        f"1 event(s) to {masked} left pending: webhook {masked} answered HTTP 500 (gave up after 3 attempts)"
    ]
    for blob in (json.dumps(record), log, *_streams(text, history)):
        for form in forms:
            assert form not in blob, f"the webhook token leaked as {form!r}: {blob}"


# ---------------------------------------------------------------------------------------------------------
# run with auth_type oauth2 or session: the client secret, the configured and the rotated refresh tokens,
# the login password and every access token the token server issued

ROTATED_SUFFIX = "/r0tated+t0ken="
OAUTH_SECRETS = {
    "client_id": {"secret_store": "vault", "secret_key": "client-id"},
    "client_secret": {"secret_store": "vault", "secret_key": "client-secret"},
    "refresh_token": {"secret_store": "vault", "secret_key": "refresh-token"},
    "password": {"secret_store": "vault", "secret_key": "password"},
}


def _forms(*values: str) -> set[str]:
    return {
        form
        for value in values
        for form in (
            value,
            quote(value, safe=""),
            quote_plus(value),
            quote_plus(value, safe="!$'()*,/:?@"),
            base64.b64encode(value.encode()).decode(),
        )
    }


@pytest.mark.parametrize(
    "case",
    [
        "client_credentials",
        "client_credentials-basic-401-echoed",
        "token-error-echoed",
        "refresh-rotated",
        "refresh-rotated-then-failed",
        "session-param",
        "session-param-401-echoed",
    ],
)
def test_oauth2_and_session_credentials_and_tokens_never_leak(
    cli: Cli, tmp_path: Path, oauth: OAuthServer, dapr_emulator: DaprEmulator, case: str
) -> None:
    """Each credential has odd characters; the API and the token endpoint echo what they got where the case
    says (a careless API's 401, an error_description), and every output is searched for every form."""
    from pullctl.pipeline.state_key import new_key

    oauth.client_secret = SECRET
    oauth.users = {"alice": HEADER_SECRET}
    configured_rt = "rt/c0nfigured+t0ken=x"
    oauth.refresh_tokens = {configured_rt}
    oauth.rotate, oauth.rotation_suffix = True, ROTATED_SUFFIX
    oauth.echo_on_401 = oauth.echo_on_token_error = True
    env = {
        "DAPR_HTTP_ENDPOINT": dapr_emulator.url,
        "PULLCTL_EVENTS": "dapr://pubsub/t",
        "PULLCTL_STATE_KEY": new_key(),
        "PULLCTL_SECRET_VAULT_CLIENT_ID": oauth.client_id,
        "PULLCTL_SECRET_VAULT_CLIENT_SECRET": SECRET,
        "PULLCTL_SECRET_VAULT_REFRESH_TOKEN": configured_rt,
        "PULLCTL_SECRET_VAULT_PASSWORD": HEADER_SECRET,
    }
    grant = "refresh_token" if case.startswith("refresh") else "client_credentials"
    request: dict[str, Any] = {
        "base_url": f"{oauth.api_url}/api/items",
        "parameters": {"item": "{thing.id}"},
        "auth_type": "oauth2",
        "oauth2": {
            "grant": grant,
            "token_url": f"{oauth.auth_url}/token",
            "client_id": "{secret.client_id}",
            "client_secret": "{secret.client_secret}",
            "client_auth": "basic" if "basic" in case else "body",
            **({"refresh_token": "{secret.refresh_token}"} if grant == "refresh_token" else {}),
        },
    }
    if case.startswith("session"):
        login = {
            "url": f"{oauth.auth_url}/login",
            "body": {"username": "alice", "password": "{secret.password}"},
        }
        del request["oauth2"]
        request.update(
            auth_type="session", session={"login": login, "token_path": "session.id", "param": "session"}
        )
    if case == "token-error-echoed":
        oauth.token_failures = [
            (400, '{"error": "invalid_client", "error_description": "ECHO"}', "application/json")
        ]
    if case.endswith("401-echoed") or case == "refresh-rotated-then-failed":
        oauth.refuse_all = True
    runner = Runner(cli, tmp_path, env)
    items = {"foreach": "thing", "items": [{"id": "a"}, {"id": "b"}], "key": "id"}
    write_source(
        runner.config, "authed", secrets=OAUTH_SECRETS, request=request, iteration=items, retry=RETRY
    )
    result = runner("run", "authed", "--output", "json")
    again = runner("run", "authed", PULLCTL_LOG_FORMAT="text")
    dry = runner("run", "authed", "--dry-run") if grant != "refresh_token" else again
    failing = case.endswith("echoed") or case.endswith("failed")
    assert result.exit_code == (1 if failing else 0), result.stdout + result.stderr
    if case == "session-param":
        doc = runner.documents("authed")[0]
        assert doc["request"]["url"] == f"{oauth.api_url}/api/items?item=a&session=***"
    if case.endswith("echoed"):
        assert "***" in result.stdout
    issued = oauth.issued()
    assert issued  # tokens were handed out, and are searched for below
    rotated = [t for t in oauth.refresh_tokens if t.endswith(ROTATED_SUFFIX)]
    forms = _forms(
        SECRET,
        HEADER_SECRET,
        configured_rt,
        *issued,
        *rotated,
        *(f"rt-{n}{ROTATED_SUFFIX}" for n in range(1, 9)),
    )
    outputs = [
        *_streams(result, again, dry),
        runner.db.read_bytes().decode("utf-8", "replace"),
        runner("runs", "--output", "json").stdout,
        *(
            m.body.decode("utf-8", "replace") if isinstance(m.body, bytes) else str(m.body)
            for m in dapr_emulator.published
        ),
    ]
    for blob in outputs:
        for form in forms:
            assert form not in blob, f"a credential leaked as {form!r}"
    assert SECRET not in oauth.seen("api") and configured_rt not in oauth.seen("api")
    assert not any(token in oauth.seen("auth") for token in issued)


# ---------------------------------------------------------------------------------------------------------
# validate, list, schema, render: nothing there reads a secret


def test_validate_list_and_schema_never_read_or_print_the_secret(
    cli: Cli, tmp_path: Path, dapr_with_secret: DaprEmulator
) -> None:
    env = {**SECRET_ENV, "DAPR_HTTP_ENDPOINT": dapr_with_secret.url}
    good, bad = tmp_path / "good", tmp_path / "bad"
    write_keyed(good, "https://api.example.test/v1")
    write_keyed(bad, "https://api.example.test/v1", retry={"max_attempts": 99})  # auth is fine, retry is not
    results = [cli("validate", str(bad), "--format", fmt, env=env) for fmt in ("text", "json", "github")]
    assert [r.exit_code for r in results] == [2, 2, 2]
    assert "ingestion.retry.max_attempts" in results[0].stdout
    results.append(cli("validate", str(good), "--strict", env=env))
    assert results[-1].exit_code == 0
    listed = cli("list", "--config", str(good), "--output", "json", env=env)
    assert json.loads(listed.stdout)[0]["auth_type"] == "api_key"
    results += [listed, cli("list", "--config", str(good), env=env)]
    invalid = cli("list", "--config", str(bad), env=env)
    assert invalid.exit_code == 2
    schema = cli("schema", env=env)
    assert schema.exit_code == 0
    _assert_clean(*_streams(*results, invalid, schema))
    assert dapr_with_secret.requests == []  # none of them asked for the secret


def test_render_never_holds_a_secret_value(cli: Cli, tmp_path: Path) -> None:
    write_source(
        tmp_path,
        "keyed",
        request={
            "base_url": "https://api.example.com/",
            "auth_type": "bearer",
            "secret_store": "kubernetes",
            "secret_key": "api-token",
            "headers": {"X-Token": "{secret.header_token}"},
        },
        secrets={"header_token": {"secret_store": "kubernetes", "secret_key": "header-token"}},
    )
    env = {
        "PULLCTL_SECRET_KUBERNETES_API_TOKEN": SECRET,
        "PULLCTL_SECRET_KUBERNETES_HEADER_TOKEN": HEADER_SECRET,
    }
    result = cli("render", "-c", str(tmp_path), env=env)
    assert result.exit_code == 0
    assert result.stdout.count("secretKeyRef") == 3  # the store URL, the auth secret, the named secret
    _assert_clean(result.stdout, result.stderr)


# ---------------------------------------------------------------------------------------------------------
# sync: the Kubernetes API emulator, with the secret as the kubeconfig's token too


@pytest.mark.parametrize("fault", [None, "forbidden", "unauthorized", 409, 500, 503, 504, "unreachable"])
def test_sync_never_prints_or_applies_the_secret(
    cli: Cli, tmp_path: Path, dapr_with_secret: DaprEmulator, fault: str | int | None
) -> None:
    env = {**SECRET_ENV, "DAPR_HTTP_ENDPOINT": dapr_with_secret.url}
    configs = tmp_path / "configs"
    write_keyed(configs, "https://api.example.test/v1")
    write_keyed(configs, "https://api.example.test/v2", source_id="other")
    with KubeEmulator(token=SECRET) as cluster:
        kubeconfig = str(cluster.write_kubeconfig(tmp_path / "kubeconfig", namespace="pulls"))
        sync = ("sync", "-c", str(configs), "--kubeconfig", kubeconfig)
        first = cli(*sync, env=env)
        assert first.exit_code == 0, first.stderr
        write_keyed(configs, "https://api.example.test/v1", schedule="0 7 * * *")  # an update to apply
        if fault == "forbidden":
            cluster.deny("patch", "cronjobs")
            cluster.deny("patch", "configmaps")
        elif fault == "unauthorized":
            cluster.token = "rotated"  # the kubeconfig still holds the old one
        elif isinstance(fault, int):
            cluster.fail("patch", "configmaps", fault)
            cluster.fail("patch", "cronjobs", fault)
        elif fault == "unreachable":
            cluster.stop()
        results = [
            cli(*sync, "--diff", env=env),
            cli(*sync, "--output", "json", env=env),
            cli(*sync, "--server-dry-run", env=env),
            cli(*sync, "--dry-run", "--diff", env=env),
        ]
        applied = json.dumps([cluster.objects(kind) for kind in ("CronJob", "ConfigMap")])
        sent = json.dumps([r.body for r in cluster.requests], default=str)
    assert [r.exit_code for r in results][:3] == [0 if fault is None else 1] * 3, results[0].stderr
    if fault is not None:
        assert "error: " in results[0].stderr
    assert "secretKeyRef" in applied
    _assert_clean(*_streams(first, *results), applied, sent)
    assert dapr_with_secret.requests == []


# ---------------------------------------------------------------------------------------------------------
# jobs sync|list|delete: the DAPR emulator, with the secret as DAPR_API_TOKEN too


@pytest.mark.parametrize("fault", [None, "token", "schedule", "absent"])
def test_jobs_never_print_the_secret(cli: Cli, tmp_path: Path, fault: str | None) -> None:
    """token: the sidecar's token changed (401 to every call); schedule: a 1.17 sidecar refuses the CRON_TZ=
    prefix (400); absent: the sidecar is gone."""
    version = "1.17" if fault == "schedule" else "1.18"
    with DaprEmulator(version=version, api_token=SECRET, secrets={"vault": {"api-key": SECRET}}) as dapr:
        runner = Runner(
            cli, tmp_path, {**SECRET_ENV, "DAPR_HTTP_ENDPOINT": dapr.url, "DAPR_API_TOKEN": SECRET}
        )
        write_keyed(runner.config, "https://api.example.test/v1")
        write_keyed(runner.config, "https://api.example.test/v2", source_id="other")
        first = runner("jobs", "sync")
        assert first.exit_code == 0, first.stderr
        write_keyed(
            runner.config, "https://api.example.test/v1", schedule="0 7 * * *", timezone="Europe/Berlin"
        )
        if fault == "token":
            dapr.api_token = "rotated"
        elif fault == "absent":
            dapr.stop()
        synced = [runner("jobs", "sync"), runner("jobs", "sync", "--output", "json")]
        listed = [runner("jobs", "list"), runner("jobs", "list", "--output", "json")]
        deleted = runner("jobs", "delete", "other")
        held = json.dumps(dapr.jobs)
    assert [r.exit_code for r in synced] == [0 if fault is None else 1] * 2, synced[0].stderr
    assert deleted.exit_code == (1 if fault in ("token", "absent") else 0), deleted.stderr
    if fault == "token":
        assert "invalid api token" in listed[0].stderr
    _assert_clean(*_streams(first, *synced, *listed, deleted), held)


# ---------------------------------------------------------------------------------------------------------
# serve: a DAPR job callback runs the pull; the log, the answers, the store, the events


@pytest.mark.parametrize("fail", [None, "status-500", "status-401", "redirect_loop", "html"])
@pytest.mark.parametrize("where", ["env", "dapr"])
def test_serve_never_logs_or_answers_the_secret(
    tmp_path: Path, upstream: Upstream, dapr_emulator: DaprEmulator, fail: str | None, where: str
) -> None:
    upstream.api_key = SECRET
    env = {"PULLCTL_EVENTS": "dapr://pubsub/t", **(SECRET_ENV if where == "env" else {})}
    if where == "dapr":
        dapr_emulator.secrets = {"vault": {"api-key": SECRET}}
    served = Served(tmp_path, env, dapr_emulator)
    write_keyed(served.config, f"{upstream.url}/auth/api-key-query", retry=RETRY)
    if fail:
        kind, _, status = fail.partition("-")
        upstream.fail("/auth/api-key-query", kind, **({"status": int(status)} if status else {}))
    served.start()
    try:
        assert served.ready()["jobs"] == "synced"
        job = dapr_emulator.trigger_sync("pull-keyed")
        api = served.post("/api/v1/triggers/job/keyed")
        ready = httpx.get(f"{served.url}/readyz")
    finally:
        served.stop()
    assert (job.status, api.status_code) == ((200, 200) if fail is None else (500, 500)), job.body
    assert json.loads(job.body)["status"] == ("succeeded" if fail is None else "failed")
    assert served.log.events("trigger_done")
    _assert_clean(job.body, api.content, ready.content, served.log.getvalue(), served.db.read_bytes())
    _assert_clean(*(m.body for m in dapr_emulator.published), json.dumps(dapr_emulator.jobs))


def test_serve_never_logs_its_tokens(tmp_path: Path, upstream: Upstream) -> None:
    """APP_API_TOKEN and DAPR_API_TOKEN are the secret; the sidecar wants another token (the start-up sync
    fails) and a trigger comes with a wrong one (401)."""
    upstream.api_key = SECRET
    with DaprEmulator(api_token="rotated") as dapr:
        env = {**SECRET_ENV, "APP_API_TOKEN": SECRET, "DAPR_API_TOKEN": SECRET}
        served = Served(tmp_path, env, dapr, startup_attempts=2)
        write_keyed(served.config, f"{upstream.url}/auth/api-key-query")
        served.start()
        try:
            wait_for(lambda: served.log.events("jobs_synced"))
            ready = httpx.get(f"{served.url}/readyz")
            wrong = served.post("/api/v1/triggers/job/keyed", headers={"dapr-api-token": SECRET[:-1]})
            right = served.post("/api/v1/triggers/job/keyed", headers={"dapr-api-token": SECRET})
        finally:
            served.stop()
    assert "invalid api token" in ready.json()["failed"][0]["error"]
    assert (ready.json()["jobs"], wrong.status_code, right.status_code) == ("partial", 401, 200)
    _assert_clean(ready.content, wrong.content, right.content, served.log.getvalue(), served.db.read_bytes())


# ---------------------------------------------------------------------------------------------------------
# config push|get|delete (the MongoDB config store), and a MongoDB URL whose password is the secret

URL_PASSWORD = quote(SECRET, safe="")  # as it must be written in a URL


@pytest.mark.mongo
@pytest.mark.usefixtures("pymongo_socket_leaks_tolerated")
def test_config_push_get_delete_never_print_the_secret(
    cli: Cli, tmp_path: Path, mongo_uri: str, mongo_database: str, dapr_with_secret: DaprEmulator
) -> None:
    database = mongo_database
    env = {
        **SECRET_ENV,
        "PULLCTL_CONFIG": mongo_uri,
        "PULLCTL_STORE": mongo_uri,
        "PULLCTL_MONGODB_DATABASE": database,
        "DAPR_HTTP_ENDPOINT": dapr_with_secret.url,
        "DAPR_API_TOKEN": SECRET,
    }
    dapr_with_secret.api_token = SECRET
    runner = Runner(cli, tmp_path, env)
    files = tmp_path / "files"
    write_keyed(files, "https://api.example.test/v1")
    try:
        results = [runner("config", "push", str(files)), runner("config", "push", str(files))]
        assert [r.stdout for r in results] == ["created    keyed\n", "unchanged  keyed\n"]
        results += [runner("config", "get", "keyed"), runner("list"), runner("jobs", "list")]
        assert "auth_query_param: api_key" in results[2].stdout
        write_keyed(files, "https://api.example.test/v1", schedule="0 7 * * *")
        dapr_with_secret.api_token = "rotated"  # the follow-up job registration fails: a warning
        changed = runner("config", "push", str(files))
        assert changed.exit_code == 0 and "invalid api token" in changed.stderr
        results += [changed, runner("config", "delete", "keyed")]
        results += [runner("config", "get", "keyed"), runner("config", "delete", "keyed")]  # gone: exit 2
        assert [r.exit_code for r in results[-2:]] == [2, 2]
    finally:
        client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
        try:
            stored = json.dumps(
                [list(client[database][c].find()) for c in client[database].list_collection_names()],
                default=str,
            )
        finally:
            client.close()
    _assert_clean(*_streams(*results), stored)


@pytest.mark.parametrize(
    "command", [("config", "push"), ("config", "get", "keyed"), ("config", "delete", "keyed")]
)
@pytest.mark.usefixtures("pymongo_socket_leaks_tolerated")
def test_config_commands_mask_the_password_of_an_unreachable_store(
    cli: Cli, tmp_path: Path, command: tuple[str, ...]
) -> None:
    url = f"mongodb://pullctl:{URL_PASSWORD}@127.0.0.1:{free_port()}/"
    write_keyed(tmp_path / "files", "https://api.example.test/v1")
    args = [*command, str(tmp_path / "files")] if command[-1] == "push" else command
    result = cli(*args, env={**SECRET_ENV, "PULLCTL_CONFIG": url})
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot reach MongoDB at mongodb://pullctl:***@127.0.0.1:"), (
        result.stderr
    )
    _assert_clean(result.stdout, result.stderr)


@pytest.mark.usefixtures("pymongo_socket_leaks_tolerated")
def test_a_password_written_without_percent_encoding_is_never_echoed(
    cli: Cli, tmp_path: Path, dapr_with_secret: DaprEmulator
) -> None:
    """A password pasted into the URL as it is (its '/' makes the URL invalid) is still masked everywhere."""
    url = f"mongodb://pullctl:{SECRET}@127.0.0.1:{free_port()}/"
    write_keyed(tmp_path / "files", "https://api.example.test/v1")
    env = {**SECRET_ENV, "DAPR_HTTP_ENDPOINT": dapr_with_secret.url}
    results = [
        cli("config", "push", str(tmp_path / "files"), "--to", url, env=env),
        cli("config", "get", "keyed", "--to", url, env=env),
        cli("config", "delete", "keyed", "--to", url, env=env),
        cli("list", "--config", url, env=env),
        cli("runs", "--store", url, env=env),
        cli("run", "keyed", "--config", str(tmp_path / "files"), "--store", url, env=env),
        cli("jobs", "sync", "--config", str(tmp_path / "files"), "--store", url, env=env),
    ]
    assert all(r.exit_code == 1 for r in results), [r.stderr for r in results]
    assert all(r.stderr.startswith("error: ") and "pullctl:***@" in r.stderr for r in results)
    _assert_clean(*_streams(*results))

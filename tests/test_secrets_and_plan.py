"""Secret resolution (environment, DAPR emulator, neither) and the pure plan."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pullctl.cli import flags
from pullctl.cli.flags import FLAGS
from pullctl.config.models import SourceConfig
from pullctl.errors import OptionsError, UsageError
from pullctl.run.plan import Planner, Shard, plan_items, shard_of
from pullctl.run.windows import Window, backfill_windows
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
    with pytest.raises(
        OptionsError, match=r"^overrides d=\{nope\.x\}: unknown template variable 'nope'$"
    ) as e:
        plan_items(Planner(CONFIG, WINDOW, "r", overrides={"d": "{nope.x}"}), [])
    assert (
        e.value.spelled(FLAGS) == "--set d={nope.x}: unknown template variable 'nope'"
    )  # as the CLI says it


def test_backfill_windows_and_steps() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    windows = backfill_windows(start, start + timedelta(hours=60), flags.step("1d"))
    assert [(w.end - w.start).total_seconds() / 3600 for w in windows] == [24, 24, 12]
    assert flags.step("1d12h") == timedelta(hours=36)
    with pytest.raises(UsageError, match=r"^--step 'x': expected a duration such as 1d, 6h, 30m or 1h30m$"):
        flags.step("x")
    # the library names its fields; the CLI's error handler says the flags instead
    with pytest.raises(OptionsError, match=r"^step makes 10001 windows of the backfill, at most 10000") as e:
        backfill_windows(start, start + timedelta(minutes=10_001), timedelta(minutes=1))
    assert e.value.spelled(FLAGS).startswith("--step makes 10001 windows")
    assert len(backfill_windows(start, start + timedelta(minutes=10_000), timedelta(minutes=1))) == 10_000
    with pytest.raises(OptionsError, match=r"^end \(2026-01-01T00:00:00\+00:00\) must be after the start"):
        backfill_windows(start, start, timedelta(days=1))
    with pytest.raises(OptionsError, match=r"^step \(0:00:00\) must be longer than zero$"):
        backfill_windows(start, start + timedelta(days=1), timedelta(0))


# -- named secrets (SOURCES.md §2): ingestion.secrets and {secret.NAME} ---------------------------------------

QUERY_SECRET = "s3cr3t/Value+with=odd&chars"  # would split or change the query if it were not encoded
HEADER_SECRET = "hdr+t0ken/%2F=x"  # would change if a header were percent-encoded or -decoded
NAMED_ENV = {
    "PULLCTL_SECRET_AZURE_KV_GOOGLE_ADS_DEVELOPER_TOKEN": HEADER_SECRET,
    "PULLCTL_SECRET_KUBERNETES_GRAPH_CLIENT_ID": QUERY_SECRET,
}


def _named_source(runner: Runner, base_url: str, **ingestion: object) -> None:
    request = ingestion.pop("request", {})
    write_source(
        runner.config,
        "named",
        secrets={
            "dev_token": {"secret_store": "azure-kv", "secret_key": "google-ads-developer-token"},
            "client_id": {"secret_store": "kubernetes", "secret_key": "graph-client-id"},
        },
        request={
            "base_url": base_url,
            "headers": {"developer-token": "{secret.dev_token}"},
            "parameters": {"key": "{secret.client_id}", "day": "{window.start:%Y-%m-%d}"},
            **request,  # type: ignore[dict-item]
        },
        retry={"max_attempts": 1},
        **ingestion,
    )


def test_named_secrets_reach_the_upstream_in_a_header_and_a_query_parameter(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    runner = Runner(cli, tmp_path, NAMED_ENV)
    _named_source(runner, f"{upstream.url}/echo")
    code, [record], stderr = runner.run_json("named", "--from", "2026-01-01", "--to", "2026-01-02")
    assert code == 0 and record["counts"]["stored"] == 1, stderr
    [sent] = upstream.requests
    assert sent.headers["developer-token"] == HEADER_SECRET  # verbatim: no percent-encoding either way
    assert sent.query == {
        "key": QUERY_SECRET,
        "day": "2026-01-01",
    }  # encoded on the way, decoded by the server
    # as the transport (yarl) sends it: '/' may stand as it is in a query, '+', '=' and '&' may not
    assert sent.query_string == "key=s3cr3t/Value%2Bwith%3Dodd%26chars&day=2026-01-01"
    [doc] = runner.documents("named")
    assert doc["request"]["url"] == f"{upstream.url}/echo?key=***&day=2026-01-01"


def test_a_named_secret_from_the_dapr_secret_store(
    cli: Cli, tmp_path: Path, upstream: Upstream, dapr_emulator: DaprEmulator
) -> None:
    dapr_emulator.secrets = {"azure-kv": {"google-ads-developer-token": HEADER_SECRET}}
    env = {"DAPR_HTTP_ENDPOINT": dapr_emulator.url, "PULLCTL_SECRET_KUBERNETES_GRAPH_CLIENT_ID": QUERY_SECRET}
    runner = Runner(cli, tmp_path, env)
    _named_source(runner, f"{upstream.url}/echo")
    code, [record], stderr = runner.run_json("named")
    assert code == 0 and record["counts"]["stored"] == 1, stderr
    [sent] = upstream.requests
    assert (sent.headers["developer-token"], sent.query["key"]) == (HEADER_SECRET, QUERY_SECRET)
    assert [r.path for r in dapr_emulator.requests] == ["/v1.0/secrets/azure-kv/google-ads-developer-token"]


def test_a_missing_named_secret_fails_the_run_naming_the_variable_and_the_store(
    cli: Cli, tmp_path: Path, upstream: Upstream, dapr_emulator: DaprEmulator
) -> None:
    dapr_emulator.secrets = {"azure-kv": {"google-ads-developer-token": HEADER_SECRET}}
    runner = Runner(cli, tmp_path, {"DAPR_HTTP_ENDPOINT": dapr_emulator.url})
    _named_source(runner, f"{upstream.url}/echo")
    code, [record], _ = runner.run_json("named")
    assert code == 1 and record["status"] == "failed"
    assert record["message"].startswith(
        "secret 'graph-client-id' of store 'kubernetes' (ingestion.secrets.client_id) not found:"
        " set PULLCTL_SECRET_KUBERNETES_GRAPH_CLIENT_ID or make it available in the DAPR secret store"
        " 'kubernetes' (DAPR could not read secret 'graph-client-id' from secret store 'kubernetes': HTTP 401"
    )
    assert upstream.requests == []


def test_a_next_page_on_another_origin_never_gets_a_named_secret(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    """No auth_type at all: the secret travels in a header. /echo answers the query back, so its ``next``
    parameter is the next page's URL: a server on another port, another origin."""
    with Upstream() as elsewhere:
        runner = Runner(cli, tmp_path, NAMED_ENV)
        _named_source(
            runner,
            f"{upstream.url}/echo",
            request={"parameters": {"next": f"{elsewhere.url}/echo"}},
            pagination={"type": "next_url", "next_url_path": "query.next"},
        )
        code, [record], stderr = runner.run_json("named")
        assert elsewhere.requests == []
    assert code == 1, stderr
    assert [e["message"] for e in record["errors"]] == [
        "the next page is on another origin (127.0.0.1); pullctl sends credentials only to 127.0.0.1"
    ]
    assert len(upstream.requests) == 1 and HEADER_SECRET not in stderr


def test_basic_auth_with_a_secret_without_a_colon_sends_it_as_the_user_name(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    """Freshdesk, Stripe and PrestaShop hand out an API key that goes in as the user, with no password."""
    upstream.basic_user, upstream.basic_password = "sk_test_4eC39HqLyjWDarjtT1zdp7dc", ""
    runner = Runner(cli, tmp_path, {"PULLCTL_SECRET_VAULT_STRIPE_KEY": upstream.basic_user})
    write_source(
        runner.config,
        "stripe",
        request={
            "base_url": f"{upstream.url}/auth/basic",
            "auth_type": "basic",
            "secret_store": "vault",
            "secret_key": "stripe-key",
        },
        retry={"max_attempts": 1},
    )
    code, [record], stderr = runner.run_json("stripe")
    assert code == 0 and record["counts"]["stored"] == 1, stderr
    expected = "Basic " + base64.b64encode(b"sk_test_4eC39HqLyjWDarjtT1zdp7dc:").decode()
    assert upstream.requests[0].headers["authorization"] == expected


def test_plan_renders_named_secrets_into_query_headers_and_body_only() -> None:
    config = SourceConfig.model_validate(
        {
            "source_id": "s",
            "ingestion": {
                "schedule": "@daily",
                "secrets": {"tok": {"secret_store": "vault", "secret_key": "tok"}},
                "request": {
                    "base_url": "https://x.example/v1",
                    "method": "POST",
                    "parameters": {"key": "{secret.tok}"},
                    "headers": {"Authorization": "Token {secret.tok}"},
                    "body": {"auth": {"token": "{secret.tok}"}, "n": 1},
                },
            },
        }
    )
    [task] = plan_items(Planner(config, WINDOW, "r", secrets={"tok": "a&b=c/d%2F"}), None).tasks
    assert (task.url, task.params) == ("https://x.example/v1", {"key": "a&b=c/d%2F"})  # httpx encodes it
    assert task.headers == {"Authorization": "Token a&b=c/d%2F"}
    assert task.body == {"auth": {"token": "a&b=c/d%2F"}, "n": 1}
    plan = plan_items(
        Planner(config, WINDOW, "r", secrets={"tok": "t\u00f6ken"}), None
    )  # httpx cannot send it
    assert (plan.tasks, plan.skipped) == (
        [],
        [
            (
                "s",
                "header value from 'Token {secret.tok}' holds a character outside ASCII; a header carries ASCII",
            )
        ],
    )
    with pytest.raises(
        OptionsError, match=r"^overrides key=\{secret\.tok\}: a secret can only be used in the source"
    ):
        plan_items(Planner(config, WINDOW, "r", overrides={"key": "{secret.tok}"}), None)

"""A known secret, in the environment and in the DAPR secret store, never appears in any output stream,
log line, run record, stored document, event or rendered manifest, plain, URL-encoded or base64-encoded."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from tests.conftest import Cli
from tests.emulators.dapr import DaprEmulator
from tests.runkit import Runner, write_source
from tests.servers.upstream import Upstream

SECRET = "s3cr3t/Value+with=odd&chars"
FORMS = {SECRET, quote(SECRET, safe=""), quote_plus(SECRET), base64.b64encode(SECRET.encode()).decode()}


def _assert_clean(*texts: str | bytes) -> None:
    for text in texts:
        blob = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        for form in FORMS:
            assert form not in blob, f"secret leaked as {form!r}"


@pytest.mark.parametrize("fail", [None, "status-500", "status-401", "redirect_loop", "html"])
@pytest.mark.parametrize("where", ["env", "dapr"])
def test_run_never_prints_or_stores_the_secret(
    cli: Cli, tmp_path: Path, upstream: Upstream, dapr_emulator: DaprEmulator, fail: str | None, where: str
) -> None:
    upstream.api_key = SECRET
    env = {"DAPR_HTTP_ENDPOINT": dapr_emulator.url, "PULLCTL_EVENTS": "dapr://pubsub/t"}
    if where == "env":
        env["PULLCTL_SECRET_VAULT_API_KEY"] = SECRET
    else:
        dapr_emulator.secrets = {"vault": {"api-key": SECRET}}
    runner = Runner(cli, tmp_path, env)
    write_source(
        runner.config,
        "keyed",
        request={
            "base_url": f"{upstream.url}/auth/api-key-query",
            "auth_type": "api_key",
            "auth_query_param": "api_key",
            "secret_store": "vault",
            "secret_key": "api-key",
        },
        retry={"max_attempts": 2, "initial_delay_seconds": 0.01},
    )
    if fail:
        kind, _, status = fail.partition("-")
        upstream.fail("/auth/api-key-query", kind, **({"status": int(status)} if status else {}))
    result = runner("run", "keyed", "--output", "json")
    text = runner("run", "keyed", "--dry-run")
    assert result.exit_code == (0 if fail is None else 1), result.stdout
    _assert_clean(result.stdout, result.stderr, text.stdout, text.stderr, runner.db.read_bytes())
    _assert_clean(*(m.body for m in dapr_emulator.published))
    _assert_clean(runner("runs", "--output", "json").stdout)


def test_render_never_holds_a_secret_value(cli: Cli, tmp_path: Path) -> None:
    write_source(
        tmp_path,
        "keyed",
        request={
            "base_url": "https://api.example.com/",
            "auth_type": "bearer",
            "secret_store": "kubernetes",
            "secret_key": "api-token",
        },
    )
    result = cli("render", "-c", str(tmp_path), env={"PULLCTL_SECRET_KUBERNETES_API_TOKEN": SECRET})
    assert result.exit_code == 0
    assert "secretKeyRef" in result.stdout
    _assert_clean(result.stdout, result.stderr)

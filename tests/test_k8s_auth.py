"""`pullctl render` of sources with auth_type oauth2 or session: their named secrets become secretKeyRefs, and
a rotating refresh-token grant gets PULLCTL_STATE_KEY from a Secret (never optional)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pullctl.schedulers.kubernetes.options import RenderOptions, SecretRef
from pullctl.schedulers.kubernetes.render import dump_yaml
from pullctl.schedulers.kubernetes.sources import render_configs
from tests.runkit import write_source

SECRETS = {
    "client_id": {"secret_store": "kubernetes", "secret_key": "ads-client-id"},
    "client_secret": {"secret_store": "kubernetes", "secret_key": "ads-client-secret"},
    "refresh_token": {"secret_store": "kubernetes", "secret_key": "ads-refresh-token"},
}
STATE_KEY_REF = {
    "name": "PULLCTL_STATE_KEY",
    "valueFrom": {"secretKeyRef": {"name": "pullctl-state-key", "key": "pullctl-state-key"}},
}


def _oauth2(grant: str, **fields: Any) -> dict[str, Any]:
    block = {
        "grant": grant,
        "token_url": "https://oauth2.example.com/token",
        "client_id": "{secret.client_id}",
        "client_secret": "{secret.client_secret}",
        **({"refresh_token": "{secret.refresh_token}"} if grant == "refresh_token" else {}),
        **fields,
    }
    return {"base_url": "https://ads.example.com/v17/campaigns", "auth_type": "oauth2", "oauth2": block}


def _env(folder: Path, request: dict[str, Any], options: RenderOptions | None = None) -> list[dict[str, Any]]:
    write_source(folder, "ads", secrets=SECRETS, request=request)
    objects = render_configs(str(folder), options or RenderOptions(namespace="pulls"))
    [cronjob] = [o for o in objects if o["kind"] == "CronJob"]
    for obj in objects:
        kubernetes_validate.validate(obj, "1.33", strict=True)
    env: list[dict[str, Any]] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0][
        "env"
    ]
    return env


def _names(env: list[dict[str, Any]]) -> list[str]:
    return [e["name"] for e in env]


@pytest.mark.parametrize("dapr", [False, True])
def test_a_rotating_refresh_token_grant_takes_the_state_key_from_a_secret(tmp_path: Path, dapr: bool) -> None:
    env = _env(tmp_path, _oauth2("refresh_token"), RenderOptions(namespace="pulls", dapr=dapr))
    assert STATE_KEY_REF in env  # not optional, even with --dapr: the sidecar is no fallback for it
    assert [n for n in _names(env) if n.startswith("PULLCTL_SECRET_")] == [
        "PULLCTL_SECRET_KUBERNETES_ADS_CLIENT_ID",
        "PULLCTL_SECRET_KUBERNETES_ADS_CLIENT_SECRET",
        "PULLCTL_SECRET_KUBERNETES_ADS_REFRESH_TOKEN",
    ]


@pytest.mark.parametrize(
    "request_",
    [
        _oauth2("refresh_token", rotation=False),
        _oauth2("client_credentials"),
        {
            "base_url": "https://bi.example.com/api/card",
            "auth_type": "session",
            "session": {
                "login": {
                    "url": "https://bi.example.com/api/session",
                    "body": {"password": "{secret.client_secret}"},
                },
                "token_path": "id",
                "header": "X-Metabase-Session",
            },
        },
    ],
    ids=["no-rotation", "client-credentials", "session"],
)
def test_other_token_flows_need_no_state_key(tmp_path: Path, request_: dict[str, Any]) -> None:
    env = _env(tmp_path, request_)
    assert "PULLCTL_STATE_KEY" not in _names(env)
    assert "PULLCTL_SECRET_KUBERNETES_ADS_CLIENT_SECRET" in _names(env)


def test_the_state_key_secret_can_be_mapped_with_secret_ref(tmp_path: Path) -> None:
    options = RenderOptions(
        namespace="pulls", secret_refs={"pullctl-state-key": SecretRef("vault-keys", "state")}
    )
    env = _env(tmp_path, _oauth2("refresh_token"), options)
    [entry] = [e for e in env if e["name"] == "PULLCTL_STATE_KEY"]
    assert entry["valueFrom"]["secretKeyRef"] == {"name": "vault-keys", "key": "state"}


def test_the_rendered_manifest_holds_references_only(tmp_path: Path) -> None:
    write_source(tmp_path, "ads", secrets=SECRETS, request=_oauth2("refresh_token"))
    text = dump_yaml(render_configs(str(tmp_path), RenderOptions(namespace="pulls")))
    docs = list(yaml.safe_load_all(text))
    assert text.count("secretKeyRef") == 5  # the store URL, three named secrets, the state key
    assert len(docs) == 2

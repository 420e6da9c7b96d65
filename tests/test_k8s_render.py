"""`pullctl render`: golden files, strict Kubernetes schema checks, and what DESIGN §6 asks of each object.

Golden files live in tests/golden/k8s/; regenerate them with `PULLCTL_UPDATE_GOLDEN=1 pytest tests/test_k8s_render.py`
and review the diff.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pullctl.config.loader import load_paths, load_text
from pullctl.errors import ConfigError, UsageError
from pullctl.schedulers.kubernetes.options import HASH_ANNOTATION, OptionsError, RenderOptions, SecretRef
from pullctl.schedulers.kubernetes.render import dump_yaml, render
from pullctl.schedulers.kubernetes.sources import load_sources, render_configs
from tests.conftest import EXAMPLES, ROOT, Cli
from tests.runkit import write_source as write_run_source
from tests.servers.upstream import GraphShape, Upstream
from tests.test_parent_child import graph_sources

GOLDEN = ROOT / "tests" / "golden" / "k8s"
MANIFESTS = ROOT / "manifests"
K8S_VERSION = "1.33"
IMAGE = "ghcr.io/example/pullctl:1.0.0"
OPTIONS = RenderOptions(image=IMAGE, namespace="pulls")
# DAPR Components are custom resources: kubernetes-validate has no schema for them (SchemaNotFoundError), and a
# Kustomization is kustomize's own file, not an API object. Everything else is checked strictly.
UNCHECKABLE_KINDS = {"Component", "Kustomization"}

BASE = """\
source_id: {source_id}
{extra}ingestion:
  schedule: "{schedule}"
  request:
    base_url: https://api.example.com/{source_id}
{request}{iteration}"""


def write_source(
    folder: Path,
    source_id: str,
    *,
    schedule: str = "0 6 * * *",
    extra: str = "",
    request: str = "",
    iteration: str = "",
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{source_id}.yaml"
    path.write_text(
        BASE.format(source_id=source_id, schedule=schedule, extra=extra, request=request, iteration=iteration)
    )
    return path


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("PULLCTL_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing; run with PULLCTL_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs; PULLCTL_UPDATE_GOLDEN=1 regenerates it"


def validate_strict(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def cronjob(objects: list[dict[str, Any]], source_id: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == "CronJob" and o["metadata"]["name"] == f"pull-{source_id}")


def pod_spec(cj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def env_of(cj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in pod_spec(cj)["containers"][0]["env"]}


# -- golden files -------------------------------------------------------------------------------------------------

EXAMPLE_IDS = sorted(s.source_id for s in load_paths([EXAMPLES]).sources if s.config.is_scheduled_pull)


@pytest.mark.parametrize("source_id", EXAMPLE_IDS)
def test_golden_per_example(source_id: str) -> None:
    text = dump_yaml(render_configs(str(EXAMPLES), OPTIONS, [source_id]))
    check_golden(f"{source_id}.yaml", text)


def test_golden_dapr_variant() -> None:
    options = RenderOptions(image=IMAGE, namespace="pulls", dapr=True, set_name="prod")
    check_golden("examples-dapr.yaml", dump_yaml(render_configs(str(EXAMPLES), options)))


def test_cli_render_is_the_goldens_concatenated(cli: Cli) -> None:
    result = cli("render", "-c", str(EXAMPLES), "--image", IMAGE, "--namespace", "pulls")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "".join((GOLDEN / f"{i}.yaml").read_text() for i in EXAMPLE_IDS)
    assert result.stderr == ""


def test_render_is_byte_stable_and_order_free(tmp_path: Path) -> None:
    sources = load_sources(str(EXAMPLES))
    first = dump_yaml(render(sources, OPTIONS))
    assert dump_yaml(render(list(reversed(sources)), OPTIONS)) == first
    assert dump_yaml(render_configs(str(EXAMPLES), OPTIONS)) == first
    assert first.startswith("---\napiVersion: v1\n") and first.endswith("\n")
    # The same config with its keys in another order: the same CronJob, byte for byte.
    raw = yaml.safe_load((EXAMPLES / "weather-api.yaml").read_text())
    (tmp_path / "weather-api.yaml").write_text(yaml.safe_dump(raw, sort_keys=True))
    reordered = render_configs(str(tmp_path), OPTIONS)
    assert dump_yaml([cronjob(reordered, "weather-api")]) == dump_yaml(
        [cronjob(render_configs(str(EXAMPLES), OPTIONS), "weather-api")]
    )


# -- strict schema validation ---------------------------------------------------------------------------------------


def test_every_rendered_example_object_passes_strict_schema() -> None:
    for dapr in (False, True):
        for obj in render_configs(str(EXAMPLES), RenderOptions(image=IMAGE, namespace="pulls", dapr=dapr)):
            validate_strict(obj)


def test_strict_mode_catches_a_misspelt_field() -> None:
    obj = cronjob(render_configs(str(EXAMPLES), OPTIONS), EXAMPLE_IDS[0])
    obj["spec"]["concurrencyPolicyy"] = "Forbid"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_strict(obj)


MANIFEST_FILES = sorted(MANIFESTS.rglob("*.yaml"))


def test_manifests_exist() -> None:
    names = {str(p.relative_to(MANIFESTS)) for p in MANIFEST_FILES}
    assert {
        "kustomization.yaml",
        "rbac.yaml",
        "serve.yaml",
        "dapr/secretstore-kubernetes.yaml",
        "dapr/secretstore-azure-keyvault.yaml",
        "dapr/pubsub.yaml",
    } <= names


@pytest.mark.parametrize("path", MANIFEST_FILES, ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_manifest_passes_strict_schema(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} is empty"
    for doc in docs:
        if doc["kind"] in UNCHECKABLE_KINDS:
            continue
        validate_strict(doc)


def test_kustomization_lists_files_that_exist() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (MANIFESTS / resource).is_file(), resource


def test_rbac_role_grants_cronjobs_and_configmaps_only() -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all((MANIFESTS / "rbac.yaml").read_text())}
    rules = docs["Role"]["rules"]
    assert sorted(r for rule in rules for r in rule["resources"]) == ["configmaps", "cronjobs"]
    for rule in rules:
        assert set(rule["verbs"]) == {"get", "list", "create", "patch", "delete"}
    runner = [
        d
        for d in yaml.safe_load_all((MANIFESTS / "rbac.yaml").read_text())
        if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == "pullctl-runner"
    ]
    assert runner and runner[0]["automountServiceAccountToken"] is False


def test_serve_deployment_has_the_dapr_annotations_and_a_hardened_pod() -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all((MANIFESTS / "serve.yaml").read_text())}
    template = docs["Deployment"]["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["dapr.io/enabled"] == "true"
    assert annotations["dapr.io/app-id"] == "pullctl"
    assert annotations["dapr.io/app-port"] == "8080"
    spec = template["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = spec["containers"][0]
    assert container["args"][0] == "serve"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_keyvault_store_uses_workload_identity_without_credentials() -> None:
    docs = list(yaml.safe_load_all((MANIFESTS / "dapr" / "secretstore-azure-keyvault.yaml").read_text()))
    component = next(d for d in docs if d["kind"] == "Component")
    assert component["spec"]["type"] == "secretstores.azure.keyvault"
    assert [m["name"] for m in component["spec"]["metadata"]] == ["vaultName"]
    account = next(d for d in docs if d["kind"] == "ServiceAccount")
    assert "azure.workload.identity/client-id" in account["metadata"]["annotations"]


# -- what each CronJob holds ----------------------------------------------------------------------------------------


def test_cronjob_follows_design_section_6() -> None:
    objects = render_configs(str(EXAMPLES), OPTIONS)
    cj = cronjob(objects, "weather-api")
    assert cj["metadata"]["labels"] == {
        "app.kubernetes.io/name": "pullctl",
        "app.kubernetes.io/managed-by": "pullctl",
        "app.kubernetes.io/instance": "weather-api",
        "pullctl.dev/set": "default",
    }
    assert len(cj["metadata"]["annotations"][HASH_ANNOTATION]) == 64
    spec = cj["spec"]
    assert spec["schedule"] == "0 6 * * *"
    assert spec["timeZone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["suspend"] is False
    assert spec["startingDeadlineSeconds"] > 0
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    job = spec["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == 3600  # ingestion.deadline_seconds' default
    assert job["backoffLimit"] >= 0 and job["ttlSecondsAfterFinished"] > 0
    assert "completionMode" not in job
    pod = pod_spec(cj)
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "pullctl-runner"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]
    assert container["args"] == ["run", "weather-api"]
    assert container["image"] == IMAGE
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert set(container["resources"]) == {"requests", "limits"}
    env = env_of(cj)
    assert env["PULLCTL_CONFIG"]["value"] == "/etc/pullctl/sources/weather-api.yaml"
    assert env["PULLCTL_STORE"]["valueFrom"] == {"secretKeyRef": {"name": "pullctl-store", "key": "url"}}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert mount["mountPath"] == "/etc/pullctl/sources"
    assert {"name": "config", "configMap": {"name": "pull-weather-api"}} in pod["volumes"]
    assert "annotations" not in spec["jobTemplate"]["spec"]["template"]["metadata"]  # no DAPR by default
    assert cronjob(objects, "exchange-rates")["spec"]["timeZone"] == "Europe/Berlin"


def test_configmap_holds_the_source_and_loads_back_to_the_same_config() -> None:
    objects = render_configs(str(EXAMPLES), OPTIONS, ["exchange-rates"])
    cm = next(o for o in objects if o["kind"] == "ConfigMap")
    assert cm["metadata"]["name"] == "pull-exchange-rates"
    text = cm["data"]["exchange-rates.yaml"]
    mounted = load_text(text, "/etc/pullctl/sources/exchange-rates.yaml", target="k8s")
    original = load_sources(str(EXAMPLES), ["exchange-rates"])[0]
    assert [s.config_hash for s in mounted.sources] == [original.config_hash]
    assert mounted.sources[0].config == original.config


def test_sharded_source_renders_an_indexed_job(tmp_path: Path) -> None:
    iteration = "  iteration:\n    foreach: region\n    items: [{id: a}, {id: b}, {id: c}]\n    shards: 4\n"
    write_source(tmp_path, "sharded", iteration=iteration)
    objects = render_configs(str(tmp_path), OPTIONS)
    job = cronjob(objects, "sharded")["spec"]["jobTemplate"]["spec"]
    assert (job["completionMode"], job["completions"], job["parallelism"]) == ("Indexed", 4, 4)
    assert pod_spec(cronjob(objects, "sharded"))["containers"][0]["args"] == ["run", "sharded"]
    for obj in objects:
        validate_strict(obj)


def test_disabled_source_renders_suspended(tmp_path: Path) -> None:
    write_source(tmp_path, "paused", extra="enabled: false\n")
    objects = render_configs(str(tmp_path), OPTIONS)
    assert cronjob(objects, "paused")["spec"]["suspend"] is True
    for obj in objects:
        validate_strict(obj)


def test_deadline_override_and_timezone(tmp_path: Path) -> None:
    path = write_source(tmp_path, "slow")
    path.write_text(
        path.read_text().replace(
            "ingestion:\n", "ingestion:\n  deadline_seconds: 7200\n  timezone: Asia/Tokyo\n"
        )
    )
    cj = cronjob(render_configs(str(tmp_path), OPTIONS), "slow")
    assert cj["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 7200
    assert cj["spec"]["timeZone"] == "Asia/Tokyo"


def test_only_scheduled_pull_sources_are_rendered(tmp_path: Path, cli: Cli) -> None:
    write_source(tmp_path, "pulled")
    (tmp_path / "blob.yaml").write_text("source_id: blobby\ningestion:\n  mode: blob_trigger\n")
    objects = render_configs(str(tmp_path), OPTIONS)
    assert sorted({o["metadata"]["name"] for o in objects}) == ["pull-pulled"]
    with pytest.raises(UsageError, match="source 'blobby' has mode blob_trigger; only scheduled_pull"):
        render_configs(str(tmp_path), OPTIONS, ["blobby"])
    result = cli("render", "-c", str(tmp_path), "blobby")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: source 'blobby' has mode blob_trigger; only scheduled_pull sources become CronJobs\n"
    )


def test_unknown_source_names_the_known_ones(cli: Cli) -> None:
    result = cli("render", "-c", str(EXAMPLES), "weather")
    assert result.exit_code == 2
    assert result.stderr == "error: no source 'weather' in the configs; did you mean 'weather-api'?\n"
    assert result.stdout == ""


# -- secrets ------------------------------------------------------------------------------------------------------

SECRET_REQUEST = "    auth_type: bearer\n    secret_store: vault\n    secret_key: api-token\n"


def test_secrets_are_secret_key_refs_never_values(tmp_path: Path, cli: Cli) -> None:
    write_source(tmp_path, "private", request=SECRET_REQUEST)
    env = {"PULLCTL_SECRET_VAULT_API_TOKEN": "s3cr3t-value", "PULLCTL_STORE": "mongodb://u:pw-in-env@db/x"}
    result = cli("render", "-c", str(tmp_path), env=env)
    assert result.exit_code == 0, result.stderr
    assert "s3cr3t-value" not in result.stdout and "pw-in-env" not in result.stdout
    cj = next(d for d in yaml.safe_load_all(result.stdout) if d["kind"] == "CronJob")
    secret_env = env_of(cj)["PULLCTL_SECRET_VAULT_API_TOKEN"]
    assert secret_env == {
        "name": "PULLCTL_SECRET_VAULT_API_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "api-token", "key": "api-token"}},
    }
    for item in pod_spec(cj)["containers"][0]["env"]:
        if item["name"].startswith("PULLCTL_SECRET_") or item["name"] == "PULLCTL_STORE":
            assert "value" not in item and "secretKeyRef" in item["valueFrom"]


def test_secret_ref_override_and_dapr_fallback(tmp_path: Path) -> None:
    write_source(tmp_path, "private", request=SECRET_REQUEST)
    options = RenderOptions(
        image=IMAGE,
        namespace="pulls",
        dapr=True,
        secret_refs={"api-token": SecretRef("shared-secrets", "vendor")},
    )
    cj = cronjob(render_configs(str(tmp_path), options), "private")
    assert env_of(cj)["PULLCTL_SECRET_VAULT_API_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "shared-secrets", "key": "vendor", "optional": True}
    }
    assert SecretRef.parse("api-token=shared-secrets") == (
        "api-token",
        SecretRef("shared-secrets", "api-token"),
    )
    with pytest.raises(UsageError, match="expected SECRET_KEY=SECRET_NAME"):
        SecretRef.parse("api-token")


def test_secret_key_that_cannot_name_a_secret_is_a_located_error(tmp_path: Path) -> None:
    path = write_source(
        tmp_path, "odd", request="    auth_type: bearer\n    secret_store: vault\n    secret_key: API_Token\n"
    )
    with pytest.raises(ConfigError) as caught:
        render_configs(str(tmp_path), OPTIONS)
    assert str(caught.value) == (
        f"1 config error:\n{path}:1:1: ingestion.request.secret_key: 'API_Token' is not usable as a Kubernetes"
        " Secret name and key (must be a lower-case DNS subdomain (a-z, 0-9, '-', '.'; at most 253 characters));"
        " map it with --secret-ref API_Token=<secret-name>/<key>"
    )
    options = RenderOptions(image=IMAGE, secret_refs={"API_Token": SecretRef("vendor", "token")})
    assert render_configs(str(tmp_path), options)


NAMED_SECRETS = """\
    headers: {developer-token: "{secret.dev_token}", X-Graph-Client: "{secret.client_id}"}
  secrets:
    dev_token: {secret_store: azure-kv, secret_key: google-ads-developer-token}
    client_id: {secret_store: kubernetes, secret_key: graph-client-id}
    same_as_auth: {secret_store: kubernetes, secret_key: api-token}
"""
KUBERNETES_AUTH = "    auth_type: bearer\n    secret_store: kubernetes\n    secret_key: api-token\n"


@pytest.mark.parametrize("dapr", [False, True])
def test_named_secrets_of_store_kubernetes_are_secret_key_refs_once_each(tmp_path: Path, dapr: bool) -> None:
    """SOURCES.md §2: a named secret of store kubernetes is a secretKeyRef like the auth secret; one of another
    store comes from DAPR (no env entry); the auth secret and a named one for the same key are one entry."""
    write_source(tmp_path, "named", request=KUBERNETES_AUTH + NAMED_SECRETS)
    options = RenderOptions(
        image=IMAGE,
        namespace="pulls",
        dapr=dapr,
        secret_refs={"graph-client-id": SecretRef("graph", "client-id")},
    )
    objects = render_configs(str(tmp_path), options)
    for obj in objects:
        validate_strict(obj)
    optional = {"optional": True} if dapr else {}
    secret_env = [
        e for e in pod_spec(cronjob(objects, "named"))["containers"][0]["env"] if "SECRET_" in e["name"]
    ]
    assert secret_env == [
        {
            "name": "PULLCTL_SECRET_KUBERNETES_API_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "api-token", "key": "api-token", **optional}},
        },
        {
            "name": "PULLCTL_SECRET_KUBERNETES_GRAPH_CLIENT_ID",
            "valueFrom": {"secretKeyRef": {"name": "graph", "key": "client-id", **optional}},
        },
    ]


def test_a_named_secret_key_that_cannot_name_a_secret_is_a_located_error(tmp_path: Path) -> None:
    named = "  secrets:\n    token: {secret_store: kubernetes, secret_key: Graph_Token}\n"
    path = write_source(tmp_path, "odd", request='    headers: {X-Token: "{secret.token}"}\n' + named)
    with pytest.raises(ConfigError) as caught:
        render_configs(str(tmp_path), OPTIONS)
    assert str(caught.value) == (
        f"1 config error:\n{path}:1:1: ingestion.secrets.token.secret_key: 'Graph_Token' is not usable as a"
        " Kubernetes Secret name and key (must be a lower-case DNS subdomain (a-z, 0-9, '-', '.'; at most 253"
        " characters)); map it with --secret-ref Graph_Token=<secret-name>/<key>"
    )


# -- DAPR -----------------------------------------------------------------------------------------------------------


def test_dapr_adds_sidecar_annotations_and_shutdown(tmp_path: Path) -> None:
    cj = cronjob(render_configs(str(EXAMPLES), RenderOptions(image=IMAGE, dapr=True)), "weather-api")
    annotations = cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["dapr.io/enabled"] == "true"
    assert annotations["dapr.io/app-id"] == "pull-weather-api"
    assert env_of(cj)["PULLCTL_DAPR_SHUTDOWN"] == {"name": "PULLCTL_DAPR_SHUTDOWN", "value": "1"}


# -- schedules DAPR alone understands ---------------------------------------------------------------------------------


def test_every_schedule_is_a_located_error_pointing_at_jobs_sync(tmp_path: Path, cli: Cli) -> None:
    path = write_source(tmp_path, "ticker", schedule="@every 15m")
    result = cli("render", "-c", str(tmp_path))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: 1 config error:\n"
        f"{path}:3:13: ingestion.schedule: '@every 15m' is understood only by DAPR Jobs; use a 5-field cron for"
        " Kubernetes CronJobs, or validate with --target dapr and deploy with 'pullctl jobs sync'\n"
    )


def test_six_field_schedule_points_at_jobs_sync(tmp_path: Path) -> None:
    write_source(tmp_path, "sixer", schedule="0 0 6 * * *")
    with pytest.raises(ConfigError) as caught:
        render_configs(str(tmp_path), OPTIONS)
    assert caught.value.issues[0].path == "ingestion.schedule"
    assert caught.value.issues[0].message.endswith(
        "or validate with --target dapr and deploy with 'pullctl jobs sync'"
    )


def test_a_source_loaded_for_dapr_is_still_refused_by_render(tmp_path: Path) -> None:
    path = write_source(tmp_path, "ticker", schedule="@every 15m")
    sources = load_paths([tmp_path], target="dapr").sources
    with pytest.raises(ConfigError) as caught:
        render(sources, OPTIONS)
    issue = caught.value.issues[0]
    assert (issue.file, issue.path) == (str(path), "ingestion.schedule")
    assert "pullctl jobs sync" in issue.message


# -- the hash -------------------------------------------------------------------------------------------------------


def test_hash_follows_everything_rendered() -> None:
    def hashes(options: RenderOptions) -> dict[tuple[str, str], str]:
        return {
            (o["kind"], o["metadata"]["name"]): o["metadata"]["annotations"][HASH_ANNOTATION]
            for o in render_configs(str(EXAMPLES), options)
        }

    base = hashes(OPTIONS)
    assert hashes(OPTIONS) == base
    for changed in (
        RenderOptions(image="other:2", namespace="pulls"),
        RenderOptions(image=IMAGE, namespace="pulls", dapr=True),
        RenderOptions(image=IMAGE, namespace="pulls", service_account="robot"),
    ):
        other = hashes(changed)
        assert [k for k in base if base[k] != other[k]] == [k for k in base if k[0] == "CronJob"]
    moved = hashes(RenderOptions(image=IMAGE, namespace="elsewhere"))
    assert all(base[k] != moved[k] for k in base)


# -- options ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"namespace": "Pulls"}, "namespace 'Pulls': must be a lower-case DNS label"),
        ({"set_name": "a b"}, "set_name 'a b': must be a label value"),
        ({"image": ""}, "image '': expected an image reference"),
        ({"service_account": "Robot"}, "service_account 'Robot': must be a lower-case DNS subdomain"),
        ({"store_secret": "Store"}, "store_secret 'Store': must be a lower-case DNS subdomain"),
        (
            {"pod_labels": {"pullctl.dev/set": "x"}},
            "pod_labels 'pullctl.dev/set': pullctl sets this label itself",
        ),
        ({"pod_labels": {"a b": "x"}}, "pod_labels 'a b': not a valid label key"),
        ({"pod_labels": {"team": "a b"}}, "pod_labels team='a b': must be a label value"),
        (
            {"secret_refs": {"tok": SecretRef("Shared", "k")}},
            "secret_refs tok: Secret name 'Shared': must be",
        ),
        ({"secret_refs": {"tok": SecretRef("shared", "k/x")}}, "secret_refs tok: key 'k/x': must consist of"),
        ({"env_from": ("cm/proxy",)}, "env_from 'cm/proxy': expected secret/NAME or configmap/NAME"),
        ({"env_from": ("proxy",)}, "env_from 'proxy': expected secret/NAME or configmap/NAME"),
        (
            {"env_from": ("secret/Proxy_Auth",)},
            "env_from 'secret/Proxy_Auth': secret name 'Proxy_Auth': must be a lower-case DNS subdomain",
        ),
    ],
)
def test_bad_options_are_usage_errors_naming_fields(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(OptionsError) as caught:
        RenderOptions(**kwargs)
    assert str(caught.value).startswith(message)
    assert "--" not in str(caught.value)  # the library speaks in fields; the CLI in flags


def test_bad_options_name_the_flags_on_the_command_line(cli: Cli) -> None:
    bad = ["--namespace", "Pulls", "--pod-label", "pullctl.dev/set=x", "--image", "a b"]
    result = cli("render", "-c", str(EXAMPLES), *bad)
    assert result.exit_code == 2
    assert result.stderr == (
        "error: --image 'a b': expected an image reference like ghcr.io/org/pullctl:1.2.3; --namespace 'Pulls':"
        " must be a lower-case DNS label (a-z, 0-9, '-'; at most 63 characters); --pod-label 'pullctl.dev/set':"
        " pullctl sets this label itself\n"
    )
    result = cli("sync", "-c", str(EXAMPLES), "--secret-ref", "api-token")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: --secret-ref 'api-token': expected SECRET_KEY=SECRET_NAME[/DATA_KEY],"
        " e.g. github-token=platform-secrets/github\n"
    )


def test_pod_labels_reach_the_pod(cli: Cli) -> None:
    result = cli(
        "render", "-c", str(EXAMPLES), "weather-api", "--pod-label", "azure.workload.identity/use=true"
    )
    assert result.exit_code == 0, result.stderr
    cj = next(d for d in yaml.safe_load_all(result.stdout) if d["kind"] == "CronJob")
    labels = cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert labels["azure.workload.identity/use"] == "true"
    assert "azure.workload.identity/use" not in cj["metadata"]["labels"]


def test_env_from_gives_the_pod_a_secret_or_configmap_as_env_and_pullctls_own_env_wins(cli: Cli) -> None:
    result = cli(
        "render",
        "-c",
        str(EXAMPLES),
        "weather-api",
        "--env-from",
        "configmap/egress-proxy",
        "--env-from",
        "secret/proxy-auth",
    )
    assert result.exit_code == 0, result.stderr
    cj = next(d for d in yaml.safe_load_all(result.stdout) if d["kind"] == "CronJob")
    validate_strict(cj)
    [container] = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [
        {"configMapRef": {"name": "egress-proxy"}},
        {"secretRef": {"name": "proxy-auth"}},
    ]
    assert {"name": "PULLCTL_LOG_FORMAT", "value": "json"} in container["env"]  # env wins over envFrom
    plain = cli("render", "-c", str(EXAMPLES), "weather-api")
    assert "envFrom" not in plain.stdout


def test_a_run_with_the_rendered_env_is_recorded_as_a_schedule_run(
    tmp_path: Path, cli: Cli, upstream: Upstream
) -> None:
    """The CronJob's pod runs `pullctl run` with the rendered env: its run record says trigger schedule (DESIGN §5)."""
    source = write_run_source(
        tmp_path / "configs",
        "spot-check",
        request={
            "base_url": f"{upstream.url}/v1/forecast",
            "parameters": {"latitude": "{spot.lat}", "longitude": "0"},
        },
        iteration={"foreach": "spot", "items": [{"id": "a", "lat": 1.0}], "key": "id"},
    )
    objects = render_configs(str(source.parent), RenderOptions(image=IMAGE))
    [config_map] = [o for o in objects if o["kind"] == "ConfigMap"]
    [(file_name, text)] = config_map["data"].items()
    mounted = tmp_path / "mounted" / file_name
    mounted.parent.mkdir()
    mounted.write_text(text)
    env = {e["name"]: e["value"] for e in env_of(cronjob(objects, "spot-check")).values() if "value" in e}
    store = f"sqlite:///{tmp_path / 'store.db'}"
    env |= {"PULLCTL_CONFIG": str(mounted), "PULLCTL_STORE": store}  # the mount and the Secret, here
    result = cli("run", "spot-check", "--output", "json", env=env)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["trigger"] == "schedule"
    [stored] = json.loads(cli("runs", "--store", store, "--output", "json").stdout)
    assert stored["trigger"] == "schedule"


def test_a_child_source_s_pod_has_its_parents_configs_and_secrets(
    tmp_path: Path, cli: Cli, upstream: Upstream
) -> None:
    """A child (iteration.from_source) fetches its parents' pages with their own configs and secrets: its
    ConfigMap holds every config of the chain and its env every secret; the pod's run stores every message."""
    upstream.graph = GraphShape(teams=2, channels=2, messages=3)
    sources = graph_sources(upstream.url)
    sources[0]["ingestion"]["request"] |= {
        "auth_type": "bearer",
        "secret_store": "kubernetes",
        "secret_key": "graph-token",
    }
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "graph.yaml").write_text(yaml.safe_dump({"sources": sources}, sort_keys=False))
    objects = render_configs(str(configs), RenderOptions(image=IMAGE))
    assert [o["metadata"]["name"] for o in objects] == ["pull-channel-messages"] * 2  # one scheduled source
    [config_map] = [o for o in objects if o["kind"] == "ConfigMap"]
    assert sorted(config_map["data"]) == ["channel-messages.yaml", "teams-channels.yaml", "teams.yaml"]
    env = env_of(cronjob(objects, "channel-messages"))
    assert env["PULLCTL_CONFIG"]["value"] == "/etc/pullctl/sources"  # the folder: the parents are beside it
    assert env["PULLCTL_SECRET_KUBERNETES_GRAPH_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "graph-token", "key": "graph-token"}
    }
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    for name, text in config_map["data"].items():
        (mounted / name).write_text(text)
    run_env = {name: e.get("value", "a-token") for name, e in env.items()}  # each Secret's value, here
    run_env |= {"PULLCTL_CONFIG": str(mounted), "PULLCTL_STORE": f"sqlite:///{tmp_path / 'store.db'}"}
    result = cli("run", "channel-messages", "--output", "json", env=run_env)
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout.splitlines()[-1])
    assert (record["status"], record["counts"]["stored"]) == ("succeeded", 2 * 2 * 3)
    assert (
        len(render_configs(str(configs), RenderOptions(image=IMAGE))) == 2
    )  # a parent change re-renders it:
    before = config_map["metadata"]["annotations"][HASH_ANNOTATION]
    sources[0]["ingestion"]["request"]["base_url"] += "?v=2"
    (configs / "graph.yaml").write_text(yaml.safe_dump({"sources": sources}, sort_keys=False))
    [changed] = [
        o for o in render_configs(str(configs), RenderOptions(image=IMAGE)) if o["kind"] == "ConfigMap"
    ]
    assert (
        changed["metadata"]["annotations"][HASH_ANNOTATION] != before
    )  # a parent's change re-syncs the child


# -- --out DIR ------------------------------------------------------------------------------------------------------


def test_out_dir_writes_one_file_per_source_and_removes_deleted_ones(tmp_path: Path, cli: Cli) -> None:
    configs, out = tmp_path / "configs", tmp_path / "deploy"
    for name in ("alpha", "beta"):
        write_source(configs, name)
    out.mkdir()
    (out / "kustomization.yaml").write_text("resources: []\n")
    (out / "pull-handwritten.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    result = cli("render", "-c", str(configs), "--out", str(out))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == f"wrote 2 files to {out}\n"
    assert sorted(p.name for p in out.iterdir()) == [
        "kustomization.yaml",
        "pull-alpha.yaml",
        "pull-beta.yaml",
        "pull-handwritten.yaml",
    ]
    assert (out / "pull-alpha.yaml").read_text() == dump_yaml(
        render_configs(str(configs), RenderOptions(), ["alpha"])
    )
    (configs / "beta.yaml").unlink()
    result = cli("render", "-c", str(configs), "--out", str(out))
    assert result.stderr == f"removed {out / 'pull-beta.yaml'}\nwrote 1 file to {out}\n"
    assert sorted(p.name for p in out.iterdir()) == [
        "kustomization.yaml",
        "pull-alpha.yaml",
        "pull-handwritten.yaml",
    ]


def test_render_never_imports_the_kubernetes_client() -> None:
    probe = (
        "import sys\nfrom pullctl.cli.main import app\n"
        "try:\n    app(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('kubernetes' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "render", "-c", str(EXAMPLES)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stderr.strip().splitlines()[-1] == "False"
    assert done.stdout.count("kind: CronJob") == len(EXAMPLE_IDS)


def test_a_config_using_an_alias_twice_is_mounted_written_out(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "twice.yaml").write_text(
        "source_id: twice\n"
        "ingestion:\n"
        "  schedule: '0 * * * *'\n"
        "  request:\n"
        "    base_url: https://api.example.com/x\n"
        "    method: POST\n"
        "    headers: &team {X-Team: data}\n"
        "    body: *team\n"
    )
    result = cli("render", "-c", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    cm = next(d for d in yaml.safe_load_all(result.stdout) if d["kind"] == "ConfigMap")
    mounted = cm["data"]["twice.yaml"]
    assert "&" not in mounted and "*" not in mounted.replace("0 * * * *", "")
    assert yaml.safe_load(mounted)["ingestion"]["request"]["body"] == {"X-Team": "data"}


def test_serve_manifest_wires_the_app_token_to_both_sides_and_limits_ingress() -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all((MANIFESTS / "serve.yaml").read_text()) if d}
    pod = docs["Deployment"]["spec"]["template"]
    assert pod["metadata"]["annotations"]["dapr.io/app-token-secret"] == "pullctl-app-token"  # the sidecar
    [container] = pod["spec"]["containers"]
    token = next(e for e in container["env"] if e["name"] == "APP_API_TOKEN")  # the app
    assert token["valueFrom"]["secretKeyRef"] == {"name": "pullctl-app-token", "key": "token"}
    assert container["args"][:3] == ["serve", "--host", "0.0.0.0"]  # refused without the token
    policy = docs["NetworkPolicy"]["spec"]
    assert policy["policyTypes"] == ["Ingress"] and policy["ingress"][0]["ports"] == [
        {"port": 8080, "protocol": "TCP"}
    ]

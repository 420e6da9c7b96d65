"""`pullctl sync` against the Kubernetes API emulator, through the official client and a generated kubeconfig."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pullctl.errors import ClusterError
from pullctl.schedulers.kubernetes.cluster import connect
from pullctl.schedulers.kubernetes.options import DEFAULT_IMAGE, HASH_ANNOTATION, RenderOptions
from pullctl.schedulers.kubernetes.plan import field_diff
from pullctl.schedulers.kubernetes.sync import SyncResult, sync_configs
from tests.conftest import Cli
from tests.emulators import kube
from tests.emulators.kube import KubeEmulator

kube_emulator = kube.kube_emulator

NS = "pulls"
USER = kube.DEFAULT_USER
CREATE_NEEDS = "an apply that creates an object needs create as well as patch"
RBAC_FIX = (
    "the Role in manifests/rbac.yaml grants what pullctl sync needs"
    " (kubectl apply -n pulls -f manifests/rbac.yaml, then bind it to this identity)"
)
SOURCE = """\
source_id: {source_id}
ingestion:
  schedule: "{schedule}"
  request:
    base_url: https://api.example.com/{source_id}
    parameters: {{page_size: {page_size}}}
"""


def write_source(folder: Path, source_id: str, schedule: str = "0 6 * * *", page_size: int = 50) -> Path:
    path = folder / f"{source_id}.yaml"
    path.write_text(SOURCE.format(source_id=source_id, schedule=schedule, page_size=page_size))
    return path


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    folder = tmp_path / "configs"
    folder.mkdir()
    for source_id in ("alpha", "beta", "gamma"):
        write_source(folder, source_id)
    return folder


@pytest.fixture
def kubeconfig(kube_emulator: KubeEmulator, tmp_path: Path) -> Path:
    return kube_emulator.write_kubeconfig(tmp_path / "kubeconfig", context="emulator", namespace=NS)


def do_sync(
    configs: Path, kubeconfig: Path, options: RenderOptions | None = None, **kwargs: Any
) -> SyncResult:
    return sync_configs(str(configs), options or RenderOptions(), kubeconfig=str(kubeconfig), **kwargs)


def actions(result: SyncResult) -> list[tuple[str, str]]:
    return [(e.action, e.ref) for e in result.entries]


def calls(emulator: KubeEmulator) -> list[tuple[str, str, str | None]]:
    return [(r.verb, r.resource, r.name) for r in emulator.requests]


def writes(emulator: KubeEmulator) -> list[tuple[str, str, str | None]]:
    return [c for c in calls(emulator) if c[0] not in ("list", "get")]


def names(emulator: KubeEmulator, kind: str, namespace: str = NS) -> list[str]:
    return [o["metadata"]["name"] for o in emulator.objects(kind, namespace)]


ALL_CREATED = [
    ("create", "configmap/pull-alpha"),
    ("create", "cronjob/pull-alpha"),
    ("create", "configmap/pull-beta"),
    ("create", "cronjob/pull-beta"),
    ("create", "configmap/pull-gamma"),
    ("create", "cronjob/pull-gamma"),
]


# -- converging ---------------------------------------------------------------------------------------------------


def test_first_sync_creates_all(kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path) -> None:
    result = do_sync(configs, kubeconfig)
    assert actions(result) == ALL_CREATED
    assert result.failed == []
    assert (result.namespace, result.context, result.server) == (NS, "emulator", kube_emulator.url)
    assert names(kube_emulator, "CronJob") == ["pull-alpha", "pull-beta", "pull-gamma"]
    assert names(kube_emulator, "ConfigMap") == ["pull-alpha", "pull-beta", "pull-gamma"]
    patches = kube_emulator.requests_for("patch")
    assert len(patches) == 6
    assert {(r.content_type.split(";")[0], r.field_manager, r.query.get("force")) for r in patches} == {
        ("application/apply-patch+yaml", "pullctl", "true")
    }
    # ConfigMaps first: a CronJob never fires without its ConfigMap.
    assert [r.resource for r in patches] == ["configmaps"] * 3 + ["cronjobs"] * 3
    # One list per kind by the set's selector, one get per planned create (is that name someone else's?).
    lists = kube_emulator.requests_for("list")
    assert [(r.resource, r.query["labelSelector"]) for r in lists] == [
        ("configmaps", "app.kubernetes.io/managed-by=pullctl,pullctl.dev/set=default"),
        ("cronjobs", "app.kubernetes.io/managed-by=pullctl,pullctl.dev/set=default"),
    ]
    assert len(kube_emulator.requests_for("get")) == 6
    stored = kube_emulator.get("CronJob", "pull-alpha", NS)
    assert stored is not None
    assert stored["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "run",
        "alpha",
    ]
    assert [m["manager"] for m in stored["metadata"]["managedFields"]] == ["pullctl"]


def test_adding_env_from_updates_every_cronjob_in_place(
    kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path
) -> None:
    do_sync(configs, kubeconfig)
    result = do_sync(configs, kubeconfig, RenderOptions(env_from=("configmap/egress-proxy",)))
    assert sorted(actions(result)) == [
        ("unchanged", "configmap/pull-alpha"),
        ("unchanged", "configmap/pull-beta"),
        ("unchanged", "configmap/pull-gamma"),
        ("update", "cronjob/pull-alpha"),
        ("update", "cronjob/pull-beta"),
        ("update", "cronjob/pull-gamma"),
    ]
    stored = kube_emulator.get("CronJob", "pull-alpha", NS)
    assert stored is not None
    container = stored["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"configMapRef": {"name": "egress-proxy"}}]


def test_unchanged_resync_makes_only_the_list_calls(
    kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path
) -> None:
    do_sync(configs, kubeconfig)
    kube_emulator.reset_log()
    result = do_sync(configs, kubeconfig)
    assert {a for a, _ in actions(result)} == {"unchanged"}
    assert calls(kube_emulator) == [("list", "configmaps", None), ("list", "cronjobs", None)]


def test_one_changed_config_updates_one_object(
    kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path
) -> None:
    do_sync(configs, kubeconfig)
    cronjob_version = kube_emulator.get("CronJob", "pull-beta", NS)["metadata"]["resourceVersion"]  # type: ignore[index]
    write_source(configs, "beta", page_size=100)  # the request changed: only the mounted file differs
    kube_emulator.reset_log()
    result = do_sync(configs, kubeconfig)
    assert [(a, r) for a, r in actions(result) if a != "unchanged"] == [("update", "configmap/pull-beta")]
    assert writes(kube_emulator) == [("patch", "configmaps", "pull-beta")]
    stored = kube_emulator.get("ConfigMap", "pull-beta", NS)
    assert stored is not None and "page_size: 100" in stored["data"]["beta.yaml"]
    assert kube_emulator.get("CronJob", "pull-beta", NS)["metadata"]["resourceVersion"] == cronjob_version  # type: ignore[index]


def test_changed_schedule_updates_that_sources_cronjob_and_configmap(
    kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path
) -> None:
    do_sync(configs, kubeconfig)
    write_source(configs, "gamma", schedule="30 7 * * 1-5")
    kube_emulator.reset_log()
    do_sync(configs, kubeconfig)
    assert writes(kube_emulator) == [
        ("patch", "configmaps", "pull-gamma"),
        ("patch", "cronjobs", "pull-gamma"),
    ]
    assert kube_emulator.get("CronJob", "pull-gamma", NS)["spec"]["schedule"] == "30 7 * * 1-5"  # type: ignore[index]


def test_changed_image_updates_every_cronjob_and_no_configmap(
    kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path
) -> None:
    do_sync(configs, kubeconfig)
    kube_emulator.reset_log()
    do_sync(configs, kubeconfig, RenderOptions(image="ghcr.io/example/pullctl:2.0.0"))
    assert writes(kube_emulator) == [
        ("patch", "cronjobs", n) for n in ("pull-alpha", "pull-beta", "pull-gamma")
    ]
    kube_emulator.reset_log()
    do_sync(configs, kubeconfig, RenderOptions(image="ghcr.io/example/pullctl:2.0.0"))
    assert writes(kube_emulator) == []


def test_removed_source_is_pruned_with_background_propagation(
    kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path
) -> None:
    do_sync(configs, kubeconfig)
    owner = kube_emulator.get("CronJob", "pull-gamma", NS)
    assert owner is not None
    kube_emulator.put(job_of(owner))  # a run the CronJob started: it must go with it
    (configs / "gamma.yaml").unlink()
    kube_emulator.reset_log()
    result = do_sync(configs, kubeconfig)
    assert [(a, r) for a, r in actions(result) if a != "unchanged"] == [
        ("delete", "configmap/pull-gamma"),
        ("delete", "cronjob/pull-gamma"),
    ]
    deletes = kube_emulator.requests_for("delete")
    assert [(r.resource, r.name, r.propagation_policy) for r in deletes] == [
        ("cronjobs", "pull-gamma", "Background"),
        ("configmaps", "pull-gamma", "Background"),
    ]
    assert names(kube_emulator, "CronJob") == ["pull-alpha", "pull-beta"]
    assert names(kube_emulator, "ConfigMap") == ["pull-alpha", "pull-beta"]
    assert kube_emulator.objects("Job", NS) == []


def job_of(cronjob: dict[str, Any]) -> dict[str, Any]:
    meta = cronjob["metadata"]
    template = cronjob["spec"]["jobTemplate"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"{meta['name']}-29000000",
            "namespace": NS,
            "labels": template["metadata"]["labels"],
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": template["spec"],
    }


def test_a_source_that_stops_being_scheduled_pull_is_pruned(
    kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path
) -> None:
    do_sync(configs, kubeconfig)
    (configs / "beta.yaml").write_text("source_id: beta\ningestion:\n  mode: blob_trigger\n")
    do_sync(configs, kubeconfig)
    assert names(kube_emulator, "CronJob") == ["pull-alpha", "pull-gamma"]


def test_no_prune_keeps_owned_objects(
    kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path, cli: Cli
) -> None:
    do_sync(configs, kubeconfig)
    (configs / "gamma.yaml").unlink()
    kube_emulator.reset_log()
    result = cli("sync", "-c", str(configs), "--kubeconfig", str(kubeconfig), "--no-prune")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == [
        "keep       configmap/pull-gamma  (not pruned: --no-prune)",
        "keep       cronjob/pull-gamma  (not pruned: --no-prune)",
    ]
    assert writes(kube_emulator) == []
    assert names(kube_emulator, "CronJob") == ["pull-alpha", "pull-beta", "pull-gamma"]


# -- ownership ----------------------------------------------------------------------------------------------------


def foreign_objects(emulator: KubeEmulator) -> dict[tuple[str, str], str]:
    """Objects pullctl's default set does not own; returns their resourceVersions."""
    blue = {
        "app.kubernetes.io/name": "pullctl",
        "app.kubernetes.io/managed-by": "pullctl",
        "app.kubernetes.io/instance": "delta",
        "pullctl.dev/set": "blue",
    }
    schedule_job = {
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}
            }
        }
    }
    stored = [
        emulator.put(
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "metadata": {"name": "pull-delta", "namespace": NS, "labels": blue},
                "spec": {"schedule": "0 1 * * *", "jobTemplate": schedule_job},
            }
        ),
        emulator.put(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "pull-delta", "namespace": NS, "labels": blue},
            }
        ),
        emulator.put(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-settings", "namespace": NS}}
        ),
        # Someone else's object that happens to carry the name pullctl wants for source alpha.
        emulator.put(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "pull-alpha", "namespace": NS},
                "data": {"x": "1"},
            }
        ),
        # Our set, our labels, but another namespace: out of this sync's reach.
        emulator.put(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "pull-omega",
                    "namespace": "elsewhere",
                    "labels": {**blue, "pullctl.dev/set": "default"},
                },
            }
        ),
    ]
    return {(o["kind"], o["metadata"]["name"]): o["metadata"]["resourceVersion"] for o in stored}


def test_objects_of_another_set_or_without_our_labels_are_never_touched(
    kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path, cli: Cli
) -> None:
    before = foreign_objects(kube_emulator)
    result = cli("sync", "-c", str(configs), "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[:2] == [
        'error: configmap/pull-alpha: configmap/pull-alpha already exists in namespace "pulls" and belongs to'
        " something else (it lacks the labels app.kubernetes.io/managed-by=pullctl,pullctl.dev/set=default);"
        " pullctl does not take over objects it does not own: delete or rename that object, or sync with that"
        " --set-name",
        "error: cronjob/pull-alpha: not applied because configmap/pull-alpha failed",
    ]
    assert result.stderr.splitlines()[2].startswith("✗ 2 of 6 failed; ")
    # The rest still went.
    assert names(kube_emulator, "CronJob") == ["pull-beta", "pull-delta", "pull-gamma"]
    for (kind, name), version in before.items():
        namespace = "elsewhere" if name == "pull-omega" else NS
        assert kube_emulator.get(kind, name, namespace)["metadata"]["resourceVersion"] == version  # type: ignore[index]
    touched = {(r.verb, r.name) for r in kube_emulator.requests if r.name}
    assert not {n for v, n in touched if v not in ("get",)} & {
        "pull-alpha",
        "pull-delta",
        "app-settings",
        "pull-omega",
    }
    # Another set's sync sees only its own objects, and prunes only them.
    kube_emulator.reset_log()
    blue = do_sync(configs, kubeconfig, RenderOptions(set_name="blue"))
    deleted = [r for a, r in actions(blue) if a == "delete"]
    assert deleted == ["configmap/pull-delta", "cronjob/pull-delta"]
    assert names(kube_emulator, "CronJob") == [
        "pull-beta",
        "pull-gamma",
    ]  # blue's beta/gamma collide: not ours


def test_sync_refuses_an_object_of_another_set_by_name(
    kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path
) -> None:
    do_sync(configs, kubeconfig, RenderOptions(set_name="blue"))
    result = do_sync(configs, kubeconfig)
    assert {e.error for e in result.entries if e.kind == "ConfigMap"} == {
        f"configmap/{e.name} already exists in namespace \"pulls\" and belongs to pullctl set 'blue'; pullctl does"
        " not take over objects it does not own: delete or rename that object, or sync with that --set-name"
        for e in result.entries
        if e.kind == "ConfigMap"
    }
    assert {o["metadata"]["labels"]["pullctl.dev/set"] for o in kube_emulator.objects("CronJob", NS)} == {
        "blue"
    }


# -- errors ---------------------------------------------------------------------------------------------------------


def test_forbidden_patch_names_verb_resource_namespace_and_rbac(
    kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path, cli: Cli
) -> None:
    kube_emulator.deny("patch", "cronjobs", NS)
    result = cli("sync", "-c", str(configs), "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[:3] == [
        f'error: cronjob/pull-{name}: create cronjobs.batch/pull-{name} in namespace "pulls" failed: cronjobs.batch'
        f' "pull-{name}" is forbidden: User "{USER}" cannot patch resource "cronjobs" in API group "batch" in the'
        f' namespace "pulls" (403 Forbidden); {CREATE_NEEDS}; {RBAC_FIX}'
        for name in ("alpha", "beta", "gamma")
    ]
    assert names(kube_emulator, "ConfigMap") == [
        "pull-alpha",
        "pull-beta",
        "pull-gamma",
    ]  # the rest still applied
    assert names(kube_emulator, "CronJob") == []


def test_forbidden_create_through_apply(kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path) -> None:
    kube_emulator.deny("create", "configmaps", NS)
    result = do_sync(configs, kubeconfig)
    assert result.entries[0].error == (
        'create configmaps/pull-alpha in namespace "pulls" failed: configmaps "pull-alpha" is forbidden:'
        f" (403 Forbidden); {CREATE_NEEDS}; {RBAC_FIX}"
    )
    assert result.entries[1].error == "not applied because configmap/pull-alpha failed"


def test_forbidden_list_stops_before_any_write(
    kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path, cli: Cli
) -> None:
    kube_emulator.deny("list", "configmaps", NS)
    result = cli("sync", "-c", str(configs), "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        'error: list configmaps in namespace "pulls" failed: configmaps is forbidden: User'
        f' "{USER}" cannot list resource "configmaps" in API group "" in the namespace "pulls" (403 Forbidden);'
        f" {RBAC_FIX}\n"
    )
    assert writes(kube_emulator) == []


def test_wrong_credentials(kube_emulator: KubeEmulator, kubeconfig: Path, configs: Path, cli: Cli) -> None:
    kubeconfig.write_text(kubeconfig.read_text().replace(kube_emulator.token, "stale-token"))
    result = cli("sync", "-c", str(configs), "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 1
    assert result.stderr == (
        f'error: unauthorized: the Kubernetes API at {kube_emulator.url} rejected the credentials of context "emulator"'
        ' while trying to list configmaps in namespace "pulls"; refresh the kubeconfig credentials (the permissions'
        " sync needs are in manifests/rbac.yaml)\n"
    )


def test_unreachable_cluster_names_context_and_server(tmp_path: Path, configs: Path, cli: Cli) -> None:
    with KubeEmulator() as gone:
        kubeconfig = gone.write_kubeconfig(tmp_path / "kubeconfig", context="prod-west", namespace=NS)
        url = gone.url
    result = cli("sync", "-c", str(configs), "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 1
    assert result.stderr == (
        f'error: cannot reach the Kubernetes API server {url} of context "prod-west": connection refused; check'
        " that the cluster is up and that --context/--kubeconfig point at it\n"
    )


def test_api_error_keeps_the_servers_message(kube_emulator: KubeEmulator, kubeconfig: Path) -> None:
    cluster = connect(str(kubeconfig))
    try:
        bad = {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "pull-bad", "namespace": NS},
            "spec": {"schedule": "61 * * * *", "jobTemplate": {"spec": {"template": {"spec": {}}}}},
        }
        with pytest.raises(ClusterError) as caught:
            cluster.apply(bad, dry_run=False, create=True)
    finally:
        cluster.close()
    status = kube_emulator.requests_for("patch")[-1]
    assert status.status == 422
    assert str(caught.value).startswith(
        'create cronjobs.batch/pull-bad in namespace "pulls" failed: CronJob.batch'
    )
    assert str(caught.value).endswith("(422 Invalid)")


def test_missing_kubeconfig(tmp_path: Path, configs: Path, cli: Cli) -> None:
    result = cli("sync", "-c", str(configs), "--kubeconfig", str(tmp_path / "nope"))
    assert result.exit_code == 1
    assert result.stderr == f"error: --kubeconfig {tmp_path / 'nope'}: no such file\n"
    env = {"KUBECONFIG": str(tmp_path / "absent"), "KUBERNETES_SERVICE_HOST": ""}
    result = cli("sync", "-c", str(configs), env=env)
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: no kubeconfig at {tmp_path / 'absent'} and not running in a cluster; pass --kubeconfig or set"
        " KUBECONFIG\n"
    )


def test_unknown_context(kubeconfig: Path, configs: Path, cli: Cli) -> None:
    result = cli("sync", "-c", str(configs), "--kubeconfig", str(kubeconfig), "--context", "staging")
    assert result.exit_code == 2
    assert (
        result.stderr == f"error: --context 'staging': no such context in {kubeconfig} (contexts: emulator)\n"
    )


def test_config_error_never_reaches_the_cluster(
    kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path, cli: Cli
) -> None:
    write_source(configs, "ticker", schedule="@every 5m")
    result = cli("sync", "-c", str(configs), "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 2
    assert "'@every 5m' is understood only by DAPR Jobs" in result.stderr
    assert kube_emulator.requests == []


# -- dry runs -------------------------------------------------------------------------------------------------------


def test_dry_run_writes_nothing(
    kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path, cli: Cli
) -> None:
    result = cli("sync", "-c", str(configs), "--kubeconfig", str(kubeconfig), "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "".join(f"{a:<10} {r}\n" for a, r in ALL_CREATED)
    assert result.stderr.startswith(
        '✓ dry run, nothing applied in namespace "pulls" (context "emulator", set "default"): 6 to create,'
        " 0 to update, 0 unchanged, 0 to delete in "
    )
    assert {r.verb for r in kube_emulator.requests} == {"list", "get"}
    assert kube_emulator.objects("CronJob") == [] and kube_emulator.objects("ConfigMap") == []


def test_server_dry_run_sends_dry_run_all(
    kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path
) -> None:
    do_sync(configs, kubeconfig)
    (configs / "gamma.yaml").unlink()
    write_source(configs, "delta")
    kube_emulator.reset_log()
    result = do_sync(configs, kubeconfig, server_dry_run=True)
    assert result.failed == [] and result.server_dry_run and not result.dry_run
    sent = [
        (r.verb, r.resource, r.name, r.query.get("dryRun"), r.dry_run)
        for r in kube_emulator.requests
        if r.verb not in ("list", "get")
    ]
    assert sent == [
        ("patch", "configmaps", "pull-delta", "All", True),
        ("patch", "cronjobs", "pull-delta", "All", True),
        ("delete", "cronjobs", "pull-gamma", None, True),
        ("delete", "configmaps", "pull-gamma", None, True),
    ]
    assert names(kube_emulator, "CronJob") == ["pull-alpha", "pull-beta", "pull-gamma"]


# -- CLI output -----------------------------------------------------------------------------------------------------


def test_cli_prints_the_plan_and_exits_0(
    kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path, cli: Cli
) -> None:
    result = cli("sync", "-c", str(configs), "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "".join(f"{a:<10} {r}\n" for a, r in ALL_CREATED)
    assert result.stderr.startswith(
        '✓ namespace "pulls" (context "emulator", set "default"): 6 created, 0 updated, 0 unchanged, 0 deleted in '
    )
    write_source(configs, "alpha", schedule="0 7 * * *")
    result = cli(
        "sync", "-c", str(configs), "--kubeconfig", str(kubeconfig), "--diff", "--image", "pullctl:9"
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "update     configmap/pull-alpha\n"
        '    ~ data["alpha.yaml"]:\n'
        "        @@ -2,3 +2,3 @@\n"
        "         ingestion:\n"
        "        -  schedule: 0 6 * * *\n"
        "        +  schedule: 0 7 * * *\n"
        "           request:\n"
        "update     cronjob/pull-alpha\n"
        f'    ~ spec.jobTemplate.spec.template.spec.containers[name=pullctl].image: "{DEFAULT_IMAGE}" -> "pullctl:9"\n'
        '    ~ spec.schedule: "0 6 * * *" -> "0 7 * * *"\n'
        "unchanged  configmap/pull-beta\n"
        "update     cronjob/pull-beta\n"
        f'    ~ spec.jobTemplate.spec.template.spec.containers[name=pullctl].image: "{DEFAULT_IMAGE}" -> "pullctl:9"\n'
        "unchanged  configmap/pull-gamma\n"
        "update     cronjob/pull-gamma\n"
        f'    ~ spec.jobTemplate.spec.template.spec.containers[name=pullctl].image: "{DEFAULT_IMAGE}" -> "pullctl:9"\n'
    )


def test_cli_json_output(kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path, cli: Cli) -> None:
    result = cli("sync", "-c", str(configs), "--kubeconfig", str(kubeconfig), "--output", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["counts"] == {"create": 6, "update": 0, "unchanged": 0, "delete": 0, "keep": 0, "failed": 0}
    assert data["objects"][0] == {
        "kind": "ConfigMap",
        "name": "pull-alpha",
        "source_id": "alpha",
        "action": "create",
        "diff": [],
        "error": None,
    }
    assert (data["namespace"], data["context"], data["set"]) == (NS, "emulator", "default")


def test_namespace_flag_overrides_the_context(
    kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path
) -> None:
    result = do_sync(configs, kubeconfig, RenderOptions(namespace="team-b"))
    assert result.namespace == "team-b"
    assert names(kube_emulator, "CronJob", "team-b") == ["pull-alpha", "pull-beta", "pull-gamma"]
    assert kube_emulator.objects("CronJob", NS) == []


# -- the field diff (pure) ------------------------------------------------------------------------------------------


def test_field_diff_reports_removed_fields_pullctl_owned() -> None:
    desired = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1"}}
    live = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "x",
            "uid": "u",
            "managedFields": [
                {"manager": "pullctl", "operation": "Apply", "fieldsV1": {"f:data": {"f:a": {}, "f:b": {}}}},
                {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:data": {"f:c": {}}}},
            ],
        },
        "data": {"a": "0", "b": "2", "c": "3"},
    }
    assert field_diff(desired, live) == ['~ data.a: "0" -> "1"', "- data.b"]


def test_hash_annotation_is_what_decides(
    kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path
) -> None:
    do_sync(configs, kubeconfig)
    # Someone drops the annotation by hand: the next sync re-applies that object (the documented way to force it).
    live = kube_emulator.get("CronJob", "pull-beta", NS)
    assert live is not None
    del live["metadata"]["annotations"][HASH_ANNOTATION]
    kube_emulator.put(live)
    kube_emulator.reset_log()
    do_sync(configs, kubeconfig)
    assert writes(kube_emulator) == [("patch", "cronjobs", "pull-beta")]
    assert HASH_ANNOTATION in kube_emulator.get("CronJob", "pull-beta", NS)["metadata"]["annotations"]  # type: ignore[index]

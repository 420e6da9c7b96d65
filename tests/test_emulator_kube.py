"""The Kubernetes API emulator, driven by the official client through the kubeconfig it writes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import pytest
from kubernetes.client import ApiClient, ApiException, BatchV1Api, CoreV1Api

from tests.emulators import kube
from tests.emulators.kube import KubeEmulator, canonical_quantity, cron_error, parse_label_selector

kube_emulator = kube.kube_emulator

APPLY = "application/apply-patch+yaml"
NS = "pulls"


def cronjob_body(
    name: str = "pull-weather",
    schedule: str = "0 6 * * *",
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": labels
            if labels is not None
            else {"app.kubernetes.io/managed-by": "pullctl", "pullctl.dev/set": "default"},
            "annotations": {"pullctl.dev/config-hash": "abc123"},
        },
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "timeZone": "Etc/UTC",
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {
                                    "name": "pullctl",
                                    "image": "ghcr.io/example/pullctl:1.2.3",
                                    "args": ["run", "weather"],
                                    "resources": {"requests": {"cpu": "0.1"}, "limits": {"memory": "1024Mi"}},
                                }
                            ],
                        }
                    },
                }
            },
        },
    }
    body["spec"].update(spec)
    return body


def configmap_body(name: str = "pull-weather", data: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS, "labels": {"app.kubernetes.io/managed-by": "pullctl"}},
        "data": data if data is not None else {"source.yaml": "source_id: weather\n"},
    }


@pytest.fixture
def api_client(kube_emulator: KubeEmulator, tmp_path: Path) -> Iterator[ApiClient]:
    kubeconfig = kube_emulator.write_kubeconfig(tmp_path / "kubeconfig", context="emulator", namespace=NS)
    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig), context="emulator")
    yield client
    client.close()


@pytest.fixture
def batch(api_client: ApiClient) -> BatchV1Api:
    return BatchV1Api(api_client)


@pytest.fixture
def core(api_client: ApiClient) -> CoreV1Api:
    return CoreV1Api(api_client)


def apply_cronjob(batch: BatchV1Api, body: dict[str, Any], **kwargs: Any) -> Any:
    kwargs.setdefault("force", True)
    return batch.patch_namespaced_cron_job(
        body["metadata"]["name"], NS, body, field_manager="pullctl", _content_type=APPLY, **kwargs
    )


def apply_configmap(core: CoreV1Api, body: dict[str, Any], **kwargs: Any) -> Any:
    return core.patch_namespaced_config_map(
        body["metadata"]["name"], NS, body, field_manager="pullctl", force=True, _content_type=APPLY, **kwargs
    )


def status_of(exc: ApiException) -> dict[str, Any]:
    body = json.loads(exc.body)
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == exc.status
    return body


# -- kubeconfig ---------------------------------------------------------------------------------------------------


def test_kubeconfig_loads_with_the_official_loader(kube_emulator: KubeEmulator, tmp_path: Path) -> None:
    path = kube_emulator.write_kubeconfig(tmp_path / "nested" / "config", context="ci", namespace="team-a")
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(
        config_file=str(path), context="ci", client_configuration=configuration
    )
    assert configuration.host == kube_emulator.url
    assert configuration.api_key == {"BearerToken": f"Bearer {kube_emulator.token}"}
    _, active = kubernetes.config.list_kube_config_contexts(config_file=str(path))
    assert active["name"] == "ci"
    assert active["context"]["namespace"] == "team-a"
    with ApiClient(configuration) as client:
        assert kubernetes.client.VersionApi(client).get_code().git_version == "v1.33.0"


def test_discovery(api_client: ApiClient) -> None:
    assert kubernetes.client.CoreApi(api_client).get_api_versions().versions == ["v1"]
    groups = kubernetes.client.ApisApi(api_client).get_api_versions().groups
    assert [g.name for g in groups] == ["batch"]
    resources = BatchV1Api(api_client).get_api_resources().resources
    assert {r.name for r in resources} == {"cronjobs", "jobs"}
    assert {r.name for r in CoreV1Api(api_client).get_api_resources().resources} == {"configmaps"}


# -- server-side apply --------------------------------------------------------------------------------------------


def test_apply_creates_then_updates_then_leaves_unchanged(
    kube_emulator: KubeEmulator, batch: BatchV1Api
) -> None:
    created = apply_cronjob(batch, cronjob_body())
    assert kube_emulator.requests[-1].status == 201
    meta = created.metadata
    assert meta.uid and meta.creation_timestamp and meta.resource_version
    assert meta.generation == 1
    assert meta.namespace == NS
    [entry] = meta.managed_fields
    assert (entry.manager, entry.operation, entry.api_version, entry.fields_type) == (
        "pullctl",
        "Apply",
        "batch/v1",
        "FieldsV1",
    )
    assert entry.time is not None
    fields = entry.fields_v1
    container = fields["f:spec"]["f:jobTemplate"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert container['k:{"name":"pullctl"}']["."] == {}
    assert fields["f:metadata"]["f:labels"] == {"f:app.kubernetes.io/managed-by": {}, "f:pullctl.dev/set": {}}
    # the apiserver's defaults, quantities in canonical form
    assert created.spec.successful_jobs_history_limit == 3
    assert created.spec.failed_jobs_history_limit == 1
    assert created.spec.suspend is False
    pod = created.spec.job_template.spec.template.spec
    assert pod.dns_policy == "ClusterFirst"
    assert pod.termination_grace_period_seconds == 30
    assert pod.containers[0].image_pull_policy == "IfNotPresent"
    assert pod.containers[0].resources.requests == {"cpu": "100m"}
    assert pod.containers[0].resources.limits == {"memory": "1Gi"}

    updated = apply_cronjob(batch, cronjob_body(schedule="30 6 * * *"))
    assert kube_emulator.requests[-1].status == 200
    assert updated.spec.schedule == "30 6 * * *"
    assert updated.metadata.uid == meta.uid
    assert int(updated.metadata.resource_version) > int(meta.resource_version)
    assert updated.metadata.generation == 2

    again = apply_cronjob(batch, cronjob_body(schedule="30 6 * * *"))
    assert kube_emulator.requests[-1].status == 200
    assert again.metadata.resource_version == updated.metadata.resource_version
    assert again.metadata.generation == 2
    assert again.metadata.managed_fields[0].time == updated.metadata.managed_fields[0].time
    assert batch.read_namespaced_cron_job("pull-weather", NS).metadata.resource_version == (
        updated.metadata.resource_version
    )


def test_metadata_only_change_keeps_generation(batch: BatchV1Api) -> None:
    first = apply_cronjob(batch, cronjob_body())
    second = apply_cronjob(batch, cronjob_body(labels={"app.kubernetes.io/managed-by": "pullctl", "x": "y"}))
    assert second.metadata.resource_version != first.metadata.resource_version
    assert second.metadata.generation == 1


def test_apply_configmap_twin(kube_emulator: KubeEmulator, core: CoreV1Api) -> None:
    created = apply_configmap(core, configmap_body())
    assert kube_emulator.requests[-1].status == 201
    assert created.metadata.generation is None
    assert created.metadata.managed_fields[0].fields_v1["f:data"] == {"f:source.yaml": {}}
    updated = apply_configmap(core, configmap_body(data={"source.yaml": "source_id: weather2\n"}))
    assert updated.data == {"source.yaml": "source_id: weather2\n"}
    assert updated.metadata.resource_version != created.metadata.resource_version
    unchanged = apply_configmap(core, configmap_body(data={"source.yaml": "source_id: weather2\n"}))
    assert unchanged.metadata.resource_version == updated.metadata.resource_version
    request = kube_emulator.requests[-1]
    assert (request.verb, request.resource, request.namespace, request.name) == (
        "patch",
        "configmaps",
        NS,
        "pull-weather",
    )
    assert request.content_type == APPLY
    assert request.query == {"fieldManager": "pullctl", "force": "true"}


def test_field_removed_from_applied_config_disappears(batch: BatchV1Api, core: CoreV1Api) -> None:
    apply_cronjob(batch, cronjob_body(startingDeadlineSeconds=300))
    body = cronjob_body(labels={"app.kubernetes.io/managed-by": "pullctl"})
    del body["spec"]["timeZone"]
    del body["metadata"]["annotations"]
    result = apply_cronjob(batch, body)
    assert result.spec.time_zone is None
    assert result.spec.starting_deadline_seconds is None
    assert result.metadata.labels == {"app.kubernetes.io/managed-by": "pullctl"}
    assert result.metadata.annotations is None
    # a defaulted field falls back to its default once nobody applies it
    del body["spec"]["concurrencyPolicy"]
    assert apply_cronjob(batch, body).spec.concurrency_policy == "Allow"

    apply_configmap(core, configmap_body(data={"a": "1", "b": "2"}))
    assert apply_configmap(core, configmap_body(data={"a": "1"})).data == {"a": "1"}


def test_fields_owned_by_another_manager_survive_and_conflict(batch: BatchV1Api) -> None:
    apply_cronjob(batch, cronjob_body())
    batch.patch_namespaced_cron_job(
        "pull-weather",
        NS,
        {"metadata": {"labels": {"team": "data"}}, "spec": {"suspend": True}},
        field_manager="kubectl-edit",
        _content_type="application/merge-patch+json",
    )
    # re-applying without `team` keeps it: pullctl never owned it
    kept = apply_cronjob(batch, cronjob_body())
    assert kept.metadata.labels["team"] == "data"
    managers = {(e.manager, e.operation) for e in kept.metadata.managed_fields}
    assert managers == {("pullctl", "Apply"), ("kubectl-edit", "Update")}

    # changing a field another manager owns conflicts unless forced
    with pytest.raises(ApiException) as excinfo:
        apply_cronjob(batch, cronjob_body(suspend=False), force=False)
    body = status_of(excinfo.value)
    assert excinfo.value.status == 409
    assert body["reason"] == "Conflict"
    assert (
        body["message"]
        == 'Apply failed with 1 conflict: conflict with "kubectl-edit" using batch/v1: .spec.suspend'
    )
    assert body["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "kubectl-edit" using batch/v1',
            "field": ".spec.suspend",
        }
    ]
    forced = apply_cronjob(batch, cronjob_body(suspend=False))
    assert forced.spec.suspend is False
    edit = next(e for e in forced.metadata.managed_fields if e.manager == "kubectl-edit")
    assert "f:spec" not in edit.fields_v1


def test_apply_requires_field_manager(batch: BatchV1Api) -> None:
    with pytest.raises(ApiException) as excinfo:
        batch.patch_namespaced_cron_job("pull-weather", NS, cronjob_body(), _content_type=APPLY)
    body = status_of(excinfo.value)
    # PatchOptions validation (handlers/patch.go): 422 Invalid, not 400
    assert excinfo.value.status == 422
    assert body["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'
    )
    assert body["details"] == {
        "group": "meta.k8s.io",
        "kind": "PatchOptions",
        "causes": [
            {
                "reason": "FieldValueRequired",
                "message": "Required value: is required for apply patch",
                "field": "fieldManager",
            }
        ],
    }


def test_force_on_a_non_apply_patch_is_invalid(kube_emulator: KubeEmulator, batch: BatchV1Api) -> None:
    apply_cronjob(batch, cronjob_body())
    with pytest.raises(ApiException) as excinfo:
        batch.patch_namespaced_cron_job(
            "pull-weather",
            NS,
            {"spec": {"suspend": True}},
            force=True,
            _content_type="application/merge-patch+json",
        )
    assert excinfo.value.status == 422
    assert "force: Forbidden: may not be specified for non-apply patch" in status_of(excinfo.value)["message"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda b: b["metadata"].update(name="other"),
            "the name of the object (other) does not match the name on the URL (pull-weather)",
        ),
        (lambda b: b.update(kind="Job"), "invalid object type: batch/v1, Kind=Job"),
        (lambda b: b.update(apiVersion="batch/v1beta1"), "invalid object type: batch/v1beta1, Kind=CronJob"),
        (
            lambda b: b["metadata"].update(namespace="elsewhere"),
            "the namespace of the provided object does not match the namespace sent on the request",
        ),
        (
            lambda b: b["metadata"].update(managedFields=[{"manager": "x"}]),
            "metadata.managedFields must be nil",
        ),
    ],
)
def test_apply_bad_requests(batch: BatchV1Api, change: Any, message: str) -> None:
    body = cronjob_body()
    change(body)
    with pytest.raises(ApiException) as excinfo:
        batch.patch_namespaced_cron_job(
            "pull-weather", NS, body, field_manager="pullctl", _content_type=APPLY
        )
    assert excinfo.value.status == 400
    status = status_of(excinfo.value)
    assert status["reason"] == "BadRequest"
    assert status["message"] == message


def test_apply_body_may_be_yaml(kube_emulator: KubeEmulator) -> None:
    yaml_body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\ndata:\n  k: v\n"
    response = httpx.patch(
        f"{kube_emulator.url}/api/v1/namespaces/{NS}/configmaps/plain",
        params={"fieldManager": "pullctl"},
        content=yaml_body,
        headers={"Authorization": f"Bearer {kube_emulator.token}", "Content-Type": APPLY},
    )
    assert response.status_code == 201
    assert response.json()["data"] == {"k": "v"}


def test_dry_run_apply_is_not_persisted(kube_emulator: KubeEmulator, batch: BatchV1Api) -> None:
    preview = apply_cronjob(batch, cronjob_body(), dry_run="All")
    assert kube_emulator.requests[-1].status == 201
    assert preview.metadata.uid
    assert kube_emulator.objects("CronJob") == []
    assert kube_emulator.requests[-1].dry_run is True

    stored = apply_cronjob(batch, cronjob_body())
    preview = apply_cronjob(batch, cronjob_body(schedule="0 7 * * *"), dry_run="All")
    assert preview.spec.schedule == "0 7 * * *"
    live = batch.read_namespaced_cron_job("pull-weather", NS)
    assert live.spec.schedule == "0 6 * * *"
    assert live.metadata.resource_version == stored.metadata.resource_version


def test_apply_validation_errors(batch: BatchV1Api) -> None:
    with pytest.raises(ApiException) as excinfo:
        apply_cronjob(batch, cronjob_body(schedule="61 * * * *", timeZone="Mars/Olympus"))
    body = status_of(excinfo.value)
    assert excinfo.value.status == 422
    assert body["reason"] == "Invalid"
    assert body["message"] == (
        'CronJob.batch "pull-weather" is invalid: [spec.schedule: Invalid value: "61 * * * *": end of range (61) '
        'above maximum (59): 61, spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus]'
    )
    assert [c["field"] for c in body["details"]["causes"]] == ["spec.schedule", "spec.timeZone"]

    with pytest.raises(ApiException) as excinfo:
        apply_cronjob(batch, cronjob_body(schedule="TZ=UTC 0 6 * * *"))
    assert (
        "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
        in status_of(excinfo.value)["message"]
    )

    long_name = "pull-" + "x" * 48
    with pytest.raises(ApiException) as excinfo:
        apply_cronjob(batch, cronjob_body(name=long_name))
    assert status_of(excinfo.value)["message"] == (
        f'CronJob.batch "{long_name}" is invalid: metadata.name: Invalid value: "{long_name}": '
        "must be no more than 52 characters"
    )


def test_strategic_and_json_patches(kube_emulator: KubeEmulator, batch: BatchV1Api) -> None:
    apply_cronjob(batch, cronjob_body())
    patched = batch.patch_namespaced_cron_job(
        "pull-weather",
        NS,
        {
            "spec": {
                "jobTemplate": {
                    "spec": {"template": {"spec": {"containers": [{"name": "pullctl", "image": "i:2"}]}}}
                }
            }
        },
        _content_type="application/strategic-merge-patch+json",
    )
    [container] = patched.spec.job_template.spec.template.spec.containers
    assert (container.image, container.args) == ("i:2", ["run", "weather"])  # merged by name, not replaced
    assert {e.manager for e in patched.metadata.managed_fields} == {"pullctl", "OpenAPI-Generator"}
    patched = batch.patch_namespaced_cron_job(
        "pull-weather",
        NS,
        [{"op": "replace", "path": "/spec/schedule", "value": "0 8 * * *"}],
        _content_type="application/json-patch+json",
    )
    assert patched.spec.schedule == "0 8 * * *"
    response = httpx.patch(
        f"{kube_emulator.url}/apis/batch/v1/namespaces/{NS}/cronjobs/pull-weather",
        content=b"{}",
        headers={"Authorization": f"Bearer {kube_emulator.token}", "Content-Type": "text/plain"},
    )
    assert response.status_code == 415
    assert response.json()["message"] == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, "
        "application/apply-patch+yaml"
    )


def test_replace_with_a_stale_resource_version_conflicts(core: CoreV1Api) -> None:
    created = apply_configmap(core, configmap_body())
    stale = created.metadata.resource_version
    replaced = core.replace_namespaced_config_map("pull-weather", NS, {**configmap_body(data={"k": "1"})})
    assert replaced.data == {"k": "1"}
    body = configmap_body(data={"k": "2"})
    body["metadata"]["resourceVersion"] = stale
    with pytest.raises(ApiException) as excinfo:
        core.replace_namespaced_config_map("pull-weather", NS, body)
    assert excinfo.value.status == 409
    assert status_of(excinfo.value)["message"] == (
        'Operation cannot be fulfilled on configmaps "pull-weather": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )


# -- create, get, list ----------------------------------------------------------------------------------------------


def test_create_then_already_exists(kube_emulator: KubeEmulator, core: CoreV1Api) -> None:
    created = core.create_namespaced_config_map(NS, configmap_body())
    assert kube_emulator.requests[-1].status == 201
    assert kube_emulator.requests[-1].verb == "create"
    assert created.metadata.managed_fields[0].manager == "OpenAPI-Generator"  # the User-Agent's first part
    assert created.metadata.managed_fields[0].operation == "Update"
    with pytest.raises(ApiException) as excinfo:
        core.create_namespaced_config_map(NS, configmap_body())
    body = status_of(excinfo.value)
    assert excinfo.value.status == 409
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == 'configmaps "pull-weather" already exists'
    assert body["details"] == {"name": "pull-weather", "kind": "configmaps"}


def test_get_missing_is_404(batch: BatchV1Api, core: CoreV1Api) -> None:
    with pytest.raises(ApiException) as excinfo:
        batch.read_namespaced_cron_job("nope", NS)
    body = status_of(excinfo.value)
    assert excinfo.value.status == 404
    assert body["reason"] == "NotFound"
    assert body["message"] == 'cronjobs.batch "nope" not found'
    assert body["details"] == {"name": "nope", "group": "batch", "kind": "cronjobs"}
    with pytest.raises(ApiException) as excinfo:
        core.read_namespaced_config_map("nope", NS)
    assert status_of(excinfo.value)["message"] == 'configmaps "nope" not found'


def test_merge_patch_of_a_missing_object_is_404(batch: BatchV1Api) -> None:
    with pytest.raises(ApiException) as excinfo:
        batch.patch_namespaced_cron_job(
            "nope", NS, {"spec": {"suspend": True}}, _content_type="application/merge-patch+json"
        )
    assert excinfo.value.status == 404


@pytest.fixture
def labelled(kube_emulator: KubeEmulator) -> KubeEmulator:
    for name, labels in {
        "a": {"app": "pullctl", "set": "default", "tier": "1"},
        "b": {"app": "pullctl", "set": "nightly"},
        "c": {"app": "other"},
        "d": {},
    }.items():
        kube_emulator.put(cronjob_body(name=name, labels=labels))
    elsewhere = cronjob_body(name="elsewhere", labels={"app": "pullctl"})
    elsewhere["metadata"]["namespace"] = "x"
    kube_emulator.put(elsewhere)
    return kube_emulator


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=pullctl", ["a", "b"]),
        ("app==pullctl", ["a", "b"]),
        ("app!=pullctl", ["c", "d"]),
        ("set in (default, nightly)", ["a", "b"]),
        ("set notin (default)", ["b", "c", "d"]),
        ("tier", ["a"]),
        ("!set", ["c", "d"]),
        ("app=pullctl,set=default", ["a"]),
        ("app in (pullctl),!tier", ["b"]),
        ("tier>0", ["a"]),
        ("", ["a", "b", "c", "d"]),
    ],
)
def test_list_by_label_selector(
    labelled: KubeEmulator, batch: BatchV1Api, selector: str, expected: list[str]
) -> None:
    result = batch.list_namespaced_cron_job(NS, label_selector=selector)
    assert [item.metadata.name for item in result.items] == expected
    assert result.kind == "CronJobList"
    assert result.api_version == "batch/v1"
    assert int(result.metadata.resource_version) > 0
    request = labelled.requests[-1]
    assert (request.verb, request.resource, request.namespace, request.name) == ("list", "cronjobs", NS, None)


def test_list_items_carry_no_type_meta(labelled: KubeEmulator) -> None:
    response = httpx.get(
        f"{labelled.url}/apis/batch/v1/namespaces/{NS}/cronjobs",
        params={"labelSelector": "app=pullctl", "limit": "1"},
        headers={"Authorization": f"Bearer {labelled.token}"},
    )
    page = response.json()
    assert "kind" not in page["items"][0]
    assert "apiVersion" not in page["items"][0]
    assert page["metadata"]["remainingItemCount"] == 1
    rest = httpx.get(
        f"{labelled.url}/apis/batch/v1/namespaces/{NS}/cronjobs",
        params={"labelSelector": "app=pullctl", "limit": "1", "continue": page["metadata"]["continue"]},
        headers={"Authorization": f"Bearer {labelled.token}"},
    ).json()
    assert [i["metadata"]["name"] for i in rest["items"]] == ["b"]
    assert "continue" not in rest["metadata"]


def test_list_bad_selector_is_400(batch: BatchV1Api) -> None:
    with pytest.raises(ApiException) as excinfo:
        batch.list_namespaced_cron_job(NS, label_selector="set in default")
    assert excinfo.value.status == 400
    assert status_of(excinfo.value)["message"] == "unable to parse requirement: found 'default' expected: '('"


def test_list_configmaps_across_namespaces_by_field(kube_emulator: KubeEmulator, core: CoreV1Api) -> None:
    kube_emulator.put(configmap_body("one"))
    kube_emulator.put(configmap_body("two"))
    result = core.list_namespaced_config_map(NS, field_selector="metadata.name=two")
    assert [i.metadata.name for i in result.items] == ["two"]
    assert result.kind == "ConfigMapList"


# -- delete ---------------------------------------------------------------------------------------------------------


def owned_job(owner: dict[str, Any], name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": NS,
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": {
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}
        },
    }


def test_delete_background_removes_dependents(kube_emulator: KubeEmulator, batch: BatchV1Api) -> None:
    cronjob = kube_emulator.put(cronjob_body())
    kube_emulator.put(owned_job(cronjob, "pull-weather-28000000"))
    unrelated = owned_job(cronjob, "unrelated")
    del unrelated["metadata"]["ownerReferences"]
    kube_emulator.put(unrelated)
    # the v37 client returns the answer of a delete as a plain dict
    status = batch.delete_namespaced_cron_job("pull-weather", NS, propagation_policy="Background")
    assert status == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": "pull-weather",
            "group": "batch",
            "kind": "cronjobs",
            "uid": cronjob["metadata"]["uid"],
        },
    }
    request = kube_emulator.requests[-1]
    assert (request.verb, request.propagation_policy, request.status) == ("delete", "Background", 200)
    assert request.query == {"propagationPolicy": "Background"}
    assert kube_emulator.objects("CronJob") == []
    assert [j["metadata"]["name"] for j in kube_emulator.objects("Job")] == ["unrelated"]
    assert [j.metadata.name for j in batch.list_namespaced_job(NS).items] == ["unrelated"]


def test_delete_options_in_the_body(kube_emulator: KubeEmulator, batch: BatchV1Api) -> None:
    cronjob = kube_emulator.put(cronjob_body())
    kube_emulator.put(owned_job(cronjob, "child"))
    body = kubernetes.client.V1DeleteOptions(propagation_policy="Orphan")
    answer = batch.delete_namespaced_cron_job("pull-weather", NS, body=body)
    assert kube_emulator.requests[-1].propagation_policy == "Orphan"
    # not deleted at once: the object comes back marked, behind the garbage collector's finalizer
    assert answer["kind"] == "CronJob"
    assert answer["metadata"]["finalizers"] == ["orphan"]
    assert kube_emulator.objects("CronJob") == []
    [child] = kube_emulator.objects("Job")
    assert "ownerReferences" not in child["metadata"]


def test_delete_foreground_answers_the_marked_object(kube_emulator: KubeEmulator) -> None:
    kube_emulator.put(cronjob_body())
    response = httpx.delete(
        f"{kube_emulator.url}/apis/batch/v1/namespaces/{NS}/cronjobs/pull-weather",
        params={"propagationPolicy": "Foreground"},
        headers={"Authorization": f"Bearer {kube_emulator.token}"},
    )
    assert response.status_code == 200
    meta = response.json()["metadata"]
    assert meta["finalizers"] == ["foregroundDeletion"]
    assert meta["deletionTimestamp"]
    assert meta["deletionGracePeriodSeconds"] == 0


def test_delete_dry_run_and_missing(kube_emulator: KubeEmulator, core: CoreV1Api) -> None:
    kube_emulator.put(configmap_body())
    core.delete_namespaced_config_map("pull-weather", NS, dry_run="All", propagation_policy="Background")
    assert kube_emulator.requests[-1].dry_run is True
    assert len(kube_emulator.objects("ConfigMap", NS)) == 1
    core.delete_namespaced_config_map("pull-weather", NS)
    assert kube_emulator.requests[-1].propagation_policy is None
    with pytest.raises(ApiException) as excinfo:
        core.delete_namespaced_config_map("pull-weather", NS)
    assert excinfo.value.status == 404
    assert status_of(excinfo.value)["message"] == 'configmaps "pull-weather" not found'


def test_delete_bad_propagation_policy(kube_emulator: KubeEmulator, core: CoreV1Api) -> None:
    kube_emulator.put(configmap_body())
    with pytest.raises(ApiException) as excinfo:
        core.delete_namespaced_config_map("pull-weather", NS, propagation_policy="Sometimes")
    assert excinfo.value.status == 422
    assert status_of(excinfo.value)["message"] == (
        'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "Sometimes": '
        'supported values: "Foreground", "Background", "Orphan", "nil"'
    )


# -- authentication and authorization ------------------------------------------------------------------------------


def test_missing_or_wrong_token_is_401(kube_emulator: KubeEmulator) -> None:
    for token in (None, "wrong"):
        configuration = kubernetes.client.Configuration(host=kube_emulator.url)
        if token:
            configuration.api_key = {"BearerToken": f"Bearer {token}"}
        with ApiClient(configuration) as client, pytest.raises(ApiException) as excinfo:
            BatchV1Api(client).list_namespaced_cron_job(NS)
        assert excinfo.value.status == 401
        assert json.loads(excinfo.value.body) == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }
    assert kube_emulator.requests[-1].status == 401


USER = '"system:serviceaccount:ci:pullctl"'


@pytest.mark.parametrize(
    ("verb", "call", "message"),
    [
        (
            "patch",
            lambda b: apply_cronjob(b, cronjob_body()),
            f'cronjobs.batch "pull-weather" is forbidden: User {USER} cannot patch resource "cronjobs" '
            f'in API group "batch" in the namespace "{NS}"',
        ),
        (
            "list",
            lambda b: b.list_namespaced_cron_job(NS),
            f'cronjobs.batch is forbidden: User {USER} cannot list resource "cronjobs" in API group "batch" '
            f'in the namespace "{NS}"',
        ),
        (
            "get",
            lambda b: b.read_namespaced_cron_job("pull-weather", NS),
            f'cronjobs.batch "pull-weather" is forbidden: User {USER} cannot get resource "cronjobs" '
            f'in API group "batch" in the namespace "{NS}"',
        ),
        (
            "create",
            lambda b: b.create_namespaced_cron_job(NS, cronjob_body()),
            f'cronjobs.batch is forbidden: User {USER} cannot create resource "cronjobs" in API group "batch" '
            f'in the namespace "{NS}"',
        ),
        (
            "delete",
            lambda b: b.delete_namespaced_cron_job("pull-weather", NS),
            f'cronjobs.batch "pull-weather" is forbidden: User {USER} cannot delete resource "cronjobs" '
            f'in API group "batch" in the namespace "{NS}"',
        ),
    ],
)
def test_denied_verbs_are_403(
    kube_emulator: KubeEmulator, batch: BatchV1Api, verb: str, call: Any, message: str
) -> None:
    kube_emulator.deny(verb, "cronjobs")
    with pytest.raises(ApiException) as excinfo:
        call(batch)
    body = status_of(excinfo.value)
    assert excinfo.value.status == 403
    assert body["reason"] == "Forbidden"
    assert body["message"] == message
    assert kube_emulator.requests[-1].verb == verb


def test_deny_is_scoped_to_resource_and_namespace(kube_emulator: KubeEmulator, core: CoreV1Api) -> None:
    kube_emulator.deny("patch", "configmaps", namespace="other")
    apply_configmap(core, configmap_body())  # NS is not denied
    elsewhere = configmap_body("x")
    elsewhere["metadata"]["namespace"] = "other"
    with pytest.raises(ApiException) as excinfo:
        core.patch_namespaced_config_map(
            "x", "other", elsewhere, field_manager="pullctl", _content_type=APPLY
        )
    assert status_of(excinfo.value)["message"] == (
        f'configmaps "x" is forbidden: User {USER} cannot patch resource "configmaps" in API group "" '
        'in the namespace "other"'
    )
    kube_emulator.allow_all()
    core.patch_namespaced_config_map("x", "other", elsewhere, field_manager="pullctl", _content_type=APPLY)


def test_apply_that_creates_also_needs_create(kube_emulator: KubeEmulator, batch: BatchV1Api) -> None:
    apply_cronjob(batch, cronjob_body(name="exists"))
    kube_emulator.deny("create", "cronjobs")
    apply_cronjob(batch, cronjob_body(name="exists", schedule="0 1 * * *"))  # an update needs only patch
    with pytest.raises(ApiException) as excinfo:
        apply_cronjob(batch, cronjob_body(name="new"))
    assert excinfo.value.status == 403
    assert status_of(excinfo.value)["message"] == 'cronjobs.batch "new" is forbidden: '


# -- injected server faults ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "message", "details"),
    [
        (
            409,
            "Conflict",
            'Operation cannot be fulfilled on cronjobs.batch "pull-weather": the object has been modified;'
            " please apply your changes to the latest version and try again",
            {"name": "pull-weather", "group": "batch", "kind": "cronjobs"},
        ),
        (
            500,
            "InternalError",
            "Internal error occurred: etcdserver: request timed out",
            {"causes": [{"message": "etcdserver: request timed out"}]},
        ),
        (503, "ServiceUnavailable", "the server is currently unable to handle the request", None),
        (
            504,
            "Timeout",
            "Timeout: request did not complete within requested timeout - context deadline exceeded",
            {},
        ),
    ],
)
def test_injected_faults_answer_the_servers_status(
    kube_emulator: KubeEmulator,
    batch: BatchV1Api,
    status: int,
    reason: str,
    message: str,
    details: dict[str, Any] | None,
) -> None:
    kube_emulator.fail("patch", "CronJob", status, times=1)
    with pytest.raises(ApiException) as excinfo:
        apply_cronjob(batch, cronjob_body())
    body = status_of(excinfo.value)
    assert (excinfo.value.status, body["reason"], body["message"]) == (status, reason, message)
    assert body.get("details") == details
    assert kube_emulator.objects("CronJob") == []  # nothing was written
    apply_cronjob(batch, cronjob_body())  # times=1: the next one goes through
    assert [r.status for r in kube_emulator.requests_for("patch")] == [status, 201]


def test_faults_are_scoped_and_come_after_authorization(
    kube_emulator: KubeEmulator, batch: BatchV1Api, core: CoreV1Api
) -> None:
    kube_emulator.fail("list", "configmaps", 500, namespace=NS, message="etcdserver: leader changed")
    kube_emulator.fail("patch", "cronjobs", 503, namespace="other")
    batch.list_namespaced_cron_job(NS)  # another resource
    apply_cronjob(batch, cronjob_body())  # another namespace
    for _ in range(2):  # no times: every request
        with pytest.raises(ApiException) as excinfo:
            core.list_namespaced_config_map(NS)
        assert status_of(excinfo.value)["message"] == "Internal error occurred: etcdserver: leader changed"
    kube_emulator.deny("list", "configmaps")
    with pytest.raises(ApiException) as excinfo:
        core.list_namespaced_config_map(NS)
    assert excinfo.value.status == 403  # RBAC answers before storage
    kube_emulator.allow_all()
    kube_emulator.heal()
    assert core.list_namespaced_config_map(NS).items == []
    with pytest.raises(ValueError, match=r"not 403 \(401: change .token; 403: deny\(\)\)"):
        kube_emulator.fail("get", "cronjobs", 403)


# -- the request log and seeding ------------------------------------------------------------------------------------


def test_request_log_and_reset(kube_emulator: KubeEmulator, batch: BatchV1Api) -> None:
    apply_cronjob(batch, cronjob_body())
    batch.list_namespaced_cron_job(NS, label_selector="app=x")
    assert [(r.method, r.verb) for r in kube_emulator.requests] == [("PATCH", "patch"), ("GET", "list")]
    patch = kube_emulator.requests_for("patch", "CronJob")[0]
    assert patch.path == f"/apis/batch/v1/namespaces/{NS}/cronjobs/pull-weather"
    assert patch.field_manager == "pullctl"
    assert patch.body["metadata"]["name"] == "pull-weather"
    assert kube_emulator.requests[-1].query == {"labelSelector": "app=x"}
    kube_emulator.reset_log()
    assert kube_emulator.requests == []


def test_put_refuses_what_the_server_would_refuse(kube_emulator: KubeEmulator) -> None:
    with pytest.raises(ValueError, match=r'CronJob.batch "x" is invalid: .*spec.schedule: Required value'):
        kube_emulator.put({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "x"}})
    kube_emulator.put(
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "x"}}, validate=False
    )
    assert kube_emulator.get("CronJob", "x") is not None


def test_put_seeds_objects_owned_by_someone_else(kube_emulator: KubeEmulator, batch: BatchV1Api) -> None:
    seeded = kube_emulator.put(cronjob_body(name="hand-made", labels={"owner": "someone"}))
    assert seeded["metadata"]["uid"]
    assert seeded["spec"]["suspend"] is False  # defaulted like a stored object
    read = batch.read_namespaced_cron_job("hand-made", NS)
    assert read.metadata.resource_version == seeded["metadata"]["resourceVersion"]
    assert [o["metadata"]["name"] for o in kube_emulator.objects("cronjobs", NS)] == ["hand-made"]
    assert kube_emulator.objects("CronJob", "elsewhere") == []


# -- pure pieces ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("0.5", "500m"),
        ("0.1", "100m"),
        ("1000m", "1"),
        ("1500m", "1500m"),
        ("1000", "1k"),
        ("128Mi", "128Mi"),
        ("1024Mi", "1Gi"),
        ("1536Mi", "1536Mi"),
        ("1.5Gi", "1536Mi"),
        ("100M", "100M"),
        ("1e3", "1e3"),
        ("0.0001", "1m"),
        (2, "2"),
        ("0", "0"),
    ],
)
def test_canonical_quantity(given: str | int, expected: str) -> None:
    assert canonical_quantity(given, round_to_milli=True) == expected


@pytest.mark.parametrize(
    ("schedule", "error"),
    [
        ("0 6 * * *", None),
        ("*/15 * * * mon-fri", None),
        ("@hourly", None),
        ("@every 1h30m", None),
        ("0 6 * *", "expected exactly 5 fields, found 4: [0 6 * *]"),
        ("0 24 * * *", "end of range (24) above maximum (23): 24"),
        ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
        ("@fortnightly", "unrecognized descriptor: @fortnightly"),
    ],
)
def test_cron_errors(schedule: str, error: str | None) -> None:
    assert cron_error(schedule) == error


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("a in", "unable to parse requirement: found '' expected: '('"),
        ("a,", "found '', expected: identifier after ','"),
        ("=a", "found '=', expected: !, identifier, or 'end of string'"),
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
    ],
)
def test_label_selector_errors(selector: str, message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_label_selector(selector)
    assert str(excinfo.value) == message

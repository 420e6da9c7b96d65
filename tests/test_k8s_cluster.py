"""`ClusterError` carries the parsed `Status` of the API's answer (code, reason) and says what to do, against the
Kubernetes API emulator through the official client (a real `Status` body for every error, like the API server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes.client import ApiException

from pullctl.errors import ClusterError
from pullctl.schedulers.kubernetes.cluster import KubeCluster, Status, connect
from pullctl.schedulers.kubernetes.sync import SyncResult
from tests.conftest import Cli
from tests.emulators import kube
from tests.emulators.kube import KubeEmulator
from tests.test_k8s_sync import NS, RBAC_FIX, USER, configs, do_sync, kubeconfig, write_source

kube_emulator = kube.kube_emulator
__all__ = ["configs", "kube_emulator", "kubeconfig"]  # the fixtures of tests/test_k8s_sync.py

SELECTOR = "app.kubernetes.io/managed-by=pullctl,pullctl.dev/set=default"
AGAIN = "the API server may accept it when sent again: run pullctl sync again"


@pytest.fixture
def cluster(kubeconfig: Path) -> Iterator[KubeCluster]:
    cluster = connect(str(kubeconfig))
    yield cluster
    cluster.close()


def errors(result: SyncResult) -> dict[str, str | None]:
    return {e.ref: e.error for e in result.entries if e.error is not None}


def test_conflict_409_is_a_conflict_to_send_again(
    kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path, cli: Cli
) -> None:
    do_sync(configs, kubeconfig)
    write_source(configs, "alpha", page_size=100)
    kube_emulator.fail("patch", "configmaps", 409, namespace=NS, times=1)
    result = cli("sync", "-c", str(configs), "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        'error: configmap/pull-alpha: apply (patch) configmaps/pull-alpha in namespace "pulls" failed: Operation'
        ' cannot be fulfilled on configmaps "pull-alpha": the object has been modified; please apply your changes'
        f" to the latest version and try again (409 Conflict); {AGAIN}"
    )
    assert do_sync(configs, kubeconfig).failed == []  # sent again, it goes through


def test_conflict_carries_code_and_reason(kube_emulator: KubeEmulator, cluster: KubeCluster) -> None:
    kube_emulator.fail("list", "cronjobs", 409, namespace=NS)
    with pytest.raises(ClusterError) as caught:
        cluster.list("CronJob", SELECTOR)
    assert (caught.value.code, caught.value.reason) == (409, "Conflict")


def test_forbidden_403_carries_the_servers_words_and_the_rbac_fix(
    kube_emulator: KubeEmulator, cluster: KubeCluster
) -> None:
    kube_emulator.deny("list", "cronjobs", NS)
    with pytest.raises(ClusterError) as caught:
        cluster.list("CronJob", SELECTOR)
    assert (caught.value.code, caught.value.reason) == (403, "Forbidden")
    assert caught.value.message == (
        f'list cronjobs.batch in namespace "pulls" failed: cronjobs.batch is forbidden: User "{USER}" cannot list'
        f' resource "cronjobs" in API group "batch" in the namespace "pulls" (403 Forbidden); {RBAC_FIX}'
    )


def test_forbidden_delete_on_prune_fails_that_entry(
    kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path
) -> None:
    do_sync(configs, kubeconfig)
    (configs / "beta.yaml").unlink()
    kube_emulator.deny("delete", "configmaps", NS)
    result = do_sync(configs, kubeconfig)
    assert errors(result) == {
        "configmap/pull-beta": 'delete configmaps/pull-beta in namespace "pulls" failed: configmaps "pull-beta" is'
        f' forbidden: User "{USER}" cannot delete resource "configmaps" in API group "" in the namespace "pulls"'
        f" (403 Forbidden); {RBAC_FIX}"
    }
    assert [o["metadata"]["name"] for o in kube_emulator.objects("ConfigMap", NS)] == [
        "pull-alpha",
        "pull-beta",
        "pull-gamma",
    ]


def test_not_found_404_on_prune_is_what_prune_wanted(
    kube_emulator: KubeEmulator, configs: Path, kubeconfig: Path, cli: Cli
) -> None:
    do_sync(configs, kubeconfig)
    (configs / "beta.yaml").unlink()

    def someone_else_deletes_it_first(result: SyncResult) -> None:
        other = connect(str(kubeconfig))
        try:
            other.delete("ConfigMap", "pull-beta", dry_run=False)
        finally:
            other.close()

    kube_emulator.reset_log()
    result = do_sync(configs, kubeconfig, on_plan=someone_else_deletes_it_first)
    assert errors(result) == {}
    assert [(r.resource, r.name, r.status) for r in kube_emulator.requests_for("delete")] == [
        ("configmaps", "pull-beta", 200),  # the other client
        ("cronjobs", "pull-beta", 200),
        ("configmaps", "pull-beta", 404),  # ours: already gone
    ]
    assert [o["metadata"]["name"] for o in kube_emulator.objects("ConfigMap", NS)] == [
        "pull-alpha",
        "pull-gamma",
    ]


def test_not_found_404_on_get_and_delete(kube_emulator: KubeEmulator, cluster: KubeCluster) -> None:
    assert cluster.get("ConfigMap", "pull-nothing") is None
    cluster.delete("CronJob", "pull-nothing", dry_run=False)  # nothing to do is no error
    assert [(r.verb, r.status) for r in kube_emulator.requests] == [("get", 404), ("delete", 404)]


INVALID = {
    "apiVersion": "batch/v1",
    "kind": "CronJob",
    "metadata": {"name": "pull-bad", "namespace": NS},
    "spec": {"schedule": "61 * * * *", "jobTemplate": {"spec": {"template": {"spec": {}}}}},
}


def test_invalid_422_keeps_the_servers_field_errors(
    kube_emulator: KubeEmulator, cluster: KubeCluster
) -> None:
    with pytest.raises(ClusterError) as caught:
        cluster.apply(INVALID, dry_run=False)
    assert (caught.value.code, caught.value.reason) == (422, "Invalid")
    assert caught.value.message == (
        'apply (patch) cronjobs.batch/pull-bad in namespace "pulls" failed: CronJob.batch "pull-bad" is invalid:'
        ' [spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61,'
        " spec.jobTemplate.spec.template.spec.containers: Required value,"
        ' spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"]'
        " (422 Invalid)"
    )
    assert kube_emulator.objects("CronJob", NS) == []


@pytest.mark.parametrize(
    ("status", "reason", "said"),
    [
        (500, "InternalError", "Internal error occurred: etcdserver: request timed out"),
        (503, "ServiceUnavailable", "the server is currently unable to handle the request"),
        (
            504,
            "Timeout",
            "Timeout: request did not complete within requested timeout - context deadline exceeded",
        ),
    ],
)
def test_server_trouble_says_to_send_again(
    kube_emulator: KubeEmulator,
    configs: Path,
    kubeconfig: Path,
    cli: Cli,
    status: int,
    reason: str,
    said: str,
) -> None:
    kube_emulator.fail("list", "configmaps", status, namespace=NS)
    result = cli("sync", "-c", str(configs), "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 1
    assert result.stderr == (
        f'error: list configmaps in namespace "pulls" failed: {said} ({status} {reason}); {AGAIN}\n'
    )


def test_unauthorized_401_carries_code_and_reason(kube_emulator: KubeEmulator, kubeconfig: Path) -> None:
    kubeconfig.write_text(kubeconfig.read_text().replace(kube_emulator.token, "stale-token"))
    cluster = connect(str(kubeconfig))
    try:
        with pytest.raises(ClusterError) as caught:
            cluster.get("CronJob", "pull-alpha")
    finally:
        cluster.close()
    assert (caught.value.code, caught.value.reason) == (401, "Unauthorized")
    assert caught.value.message.startswith(
        f'unauthorized: the Kubernetes API at {kube_emulator.url} rejected the credentials of context "emulator"'
        ' while trying to get cronjobs.batch in namespace "pulls"'
    )


def test_status_of_a_body_that_is_no_status() -> None:
    """A proxy in front of the API answers its own page: no reason, the HTTP phrase as the message."""
    exc = ApiException(status=502, reason="Bad Gateway")
    exc.body = "<html><body>502 Bad Gateway</body></html>"
    assert Status.of(exc) == Status(502, "", "Bad Gateway")
    exc.body = '{"kind": "Status", "code": 429, "reason": "TooManyRequests", "message": "slow down"}'
    assert Status.of(exc) == Status(429, "TooManyRequests", "slow down")

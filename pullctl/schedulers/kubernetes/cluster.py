"""The cluster: the one place that talks to the Kubernetes API.

``kubernetes`` (the official client) and ``urllib3`` are imported inside ``connect`` and the methods of
``KubeCluster``, never at module level: rendering never loads them. Their errors (``ApiException``, urllib3
connection errors) become ``ClusterError`` in ``KubeCluster._call``, kubeconfig errors in ``connect``.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from pullctl.errors import ClusterError, UsageError
from pullctl.schedulers.kubernetes.options import FIELD_MANAGER

Obj = dict[str, Any]

RBAC_HINT = "manifests/rbac.yaml"
_RESOURCE = {"ConfigMap": "configmaps", "CronJob": "cronjobs.batch"}


class Cluster(Protocol):
    """What ``sync`` needs from a cluster. ``KubeCluster`` is the real one."""

    namespace: str
    context: str
    server: str

    def list(self, kind: str, selector: str) -> list[Obj]: ...
    def get(self, kind: str, name: str) -> Obj | None: ...
    def apply(self, obj: Obj, dry_run: bool, create: bool = False) -> None: ...
    def delete(self, kind: str, name: str, dry_run: bool) -> None: ...


REQUEST_TIMEOUT = (10.0, 60.0)  # (connect, read) seconds per API call
LIST_PAGE = 500


def _verb_text(verb: str) -> str:
    return {"patch": "apply (patch)"}.get(verb, verb)


class KubeCluster:
    """The official client, with every error translated into ``ClusterError`` where it enters."""

    def __init__(self, api_client: Any, namespace: str, context: str) -> None:
        from kubernetes.client import BatchV1Api, CoreV1Api

        self.api_client = api_client
        self.namespace = namespace
        self.context = context
        self.server = str(api_client.configuration.host)
        self._batch = BatchV1Api(api_client)
        self._core = CoreV1Api(api_client)

    def close(self) -> None:
        self.api_client.close()

    # -- calls --------------------------------------------------------------------------------------------

    def list(self, kind: str, selector: str) -> list[Obj]:
        call = (
            self._batch.list_namespaced_cron_job
            if kind == "CronJob"
            else self._core.list_namespaced_config_map
        )
        items: list[Obj] = []
        token: str | None = None
        while True:
            extra = {"_continue": token} if token else {}
            page = self._call(
                "list", kind, None, call, self.namespace, label_selector=selector, limit=LIST_PAGE, **extra
            )
            for item in page.get("items") or []:  # list items come without apiVersion and kind
                item.setdefault("apiVersion", "batch/v1" if kind == "CronJob" else "v1")
                item.setdefault("kind", kind)
                items.append(item)
            token = (page.get("metadata") or {}).get("continue") or None
            if not token:
                return items

    def get(self, kind: str, name: str) -> Obj | None:
        call = (
            self._batch.read_namespaced_cron_job
            if kind == "CronJob"
            else self._core.read_namespaced_config_map
        )
        try:
            return self._call("get", kind, name, call, name, self.namespace)
        except _NotFound:
            return None

    def apply(self, obj: Obj, dry_run: bool, create: bool = False) -> None:
        """Server-side apply; ``create`` says the plan expects a new object (RBAC wants create too, then)."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        call = (
            self._batch.patch_namespaced_cron_job
            if kind == "CronJob"
            else self._core.patch_namespaced_config_map
        )
        extra = {"dry_run": "All"} if dry_run else {}
        self._call(
            "create" if create else "patch",
            kind,
            name,
            call,
            name,
            self.namespace,
            obj,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
            **extra,
        )

    def delete(self, kind: str, name: str, dry_run: bool) -> None:
        from kubernetes.client import V1DeleteOptions

        call = (
            self._batch.delete_namespaced_cron_job
            if kind == "CronJob"
            else self._core.delete_namespaced_config_map
        )
        body = V1DeleteOptions(propagation_policy="Background", dry_run=["All"] if dry_run else None)
        with contextlib.suppress(_NotFound):  # already gone: what we wanted
            self._call("delete", kind, name, call, name, self.namespace, body=body)

    # -- error translation --------------------------------------------------------------------------------

    def _call(
        self, verb: str, kind: str, name: str | None, call: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Obj:
        import urllib3
        from kubernetes.client import ApiException

        try:
            response = call(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kwargs)
            data = response.data
        except ApiException as exc:
            if exc.status == 404 and verb in ("get", "delete"):
                raise _NotFound() from None
            raise self._api_error(exc, verb, kind, name) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unreachable(exc) from None
        try:
            decoded = json.loads(data) if data else {}
        except ValueError:
            raise ClusterError(
                f"the Kubernetes API at {self.server} answered {verb} {_RESOURCE[kind]} with something that"
                " is not JSON; is --context pointing at a Kubernetes API server?"
            ) from None
        return decoded if isinstance(decoded, dict) else {}

    def _api_error(self, exc: Any, verb: str, kind: str, name: str | None) -> ClusterError:
        status, body = int(exc.status or 0), _status_body(exc)
        resource = _RESOURCE[kind]
        message = str(body.get("message") or exc.reason or "").strip()
        if status == 0:
            return self._unreachable(exc)
        if status == 403:
            # The RBAC filter names user and verb; the extra create check of an apply names neither.
            match = re.search(r'User "([^"]*)" cannot (\w+)', message)
            who = f'User "{match.group(1)}"' if match else "the current identity"
            did = match.group(2) if match else verb
            return ClusterError(
                f'forbidden: {who} cannot {did} {resource} in namespace "{self.namespace}";'
                f" the Role in {RBAC_HINT} grants what pullctl sync needs"
                f" (kubectl apply -n {self.namespace} -f {RBAC_HINT}, then bind it to this identity)"
            )
        if status == 401:
            return ClusterError(
                f"unauthorized: the Kubernetes API at {self.server} rejected the credentials of context"
                f' "{self.context}" while trying to {verb} {resource} in namespace "{self.namespace}";'
                f" refresh the kubeconfig credentials (the permissions sync needs are in {RBAC_HINT})"
            )
        target = f"{resource}/{name}" if name else resource
        reason = str(body.get("reason") or exc.reason or "").strip()
        return ClusterError(
            f'{_verb_text(verb)} {target} in namespace "{self.namespace}" failed: {message or "no message"}'
            f" ({status}{' ' + reason if reason else ''})"
        )

    def _unreachable(self, exc: BaseException) -> ClusterError:
        return ClusterError(
            f'cannot reach the Kubernetes API server {self.server} of context "{self.context}":'
            f" {_reason(exc)}; check that the cluster is up and that --context/--kubeconfig point at it"
        )


class _NotFound(Exception):
    pass


def _status_body(exc: Any) -> Obj:
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _reason(exc: BaseException) -> str:
    """A short cause for a connection failure: walk urllib3's wrappers down to the socket error."""
    import errno
    import socket

    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, socket.timeout | TimeoutError) or "timed out" in str(seen).lower():
            return "timed out"
        if isinstance(seen, ConnectionRefusedError) or getattr(seen, "errno", None) == errno.ECONNREFUSED:
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return "the host name does not resolve"
        if isinstance(seen, ConnectionResetError):
            return "the connection was reset"
        nxt = getattr(seen, "reason", None)
        seen = nxt if isinstance(nxt, BaseException) else (seen.__cause__ or seen.__context__)
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    return text.splitlines()[0] if text else type(exc).__name__


IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def connect(
    kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None
) -> KubeCluster:
    """A ``KubeCluster`` from a kubeconfig (``--kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``)
    or, with none of those and inside a pod, the in-cluster config. The namespace: ``namespace``, else the
    context's, else the pod's, else ``default``."""
    import os

    import kubernetes

    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
    exists = any(Path(p).expanduser().is_file() for p in path.split(os.pathsep) if p)
    if kubeconfig is None and not exists and os.environ.get("KUBERNETES_SERVICE_HOST"):
        if context:
            raise UsageError("--context needs a kubeconfig; inside a pod pullctl uses the in-cluster config")
        configuration = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        except kubernetes.config.ConfigException as exc:
            raise ClusterError(f"cannot use the in-cluster config: {exc}") from None
        if namespace is None and IN_CLUSTER_NAMESPACE.is_file():
            namespace = IN_CLUSTER_NAMESPACE.read_text().strip()
        return KubeCluster(kubernetes.client.ApiClient(configuration), namespace or "default", "in-cluster")
    if not exists and kubeconfig is not None:
        raise ClusterError(f"--kubeconfig {kubeconfig}: no such file")
    if not exists:
        raise ClusterError(
            f"no kubeconfig at {path} and not running in a cluster; pass --kubeconfig or set KUBECONFIG"
        )
    try:
        contexts, active = kubernetes.config.list_kube_config_contexts(config_file=path)
        chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
        if chosen is None:
            names = ", ".join(sorted(str(c.get("name")) for c in contexts)) or "none"
            raise UsageError(f"--context '{context}': no such context in {path} (contexts: {names})")
        api_client = kubernetes.config.new_client_from_config(
            config_file=path, context=chosen["name"], persist_config=False
        )
    except (kubernetes.config.ConfigException, OSError) as exc:
        raise ClusterError(f"cannot use the kubeconfig {path}: {exc}") from None
    ns = namespace or (chosen.get("context") or {}).get("namespace") or "default"
    return KubeCluster(api_client, ns, str(chosen["name"]))

"""The cluster: the one place that talks to the Kubernetes API.

``kubernetes`` (the official client) and ``urllib3`` are imported inside ``connect`` and the methods of
``KubeCluster``, never at module level: rendering never loads them. Their errors become ``ClusterError`` in
``KubeCluster._call`` (an API error carries the ``code`` and ``reason`` of the server's ``Status``),
kubeconfig errors in ``connect``. ``RESOURCES`` is the one table of the kinds pullctl writes and how the
client reaches them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pullctl.errors import ClusterError, OptionsError
from pullctl.schedulers.kubernetes.options import FIELD_MANAGER
from pullctl.settings import Settings

Obj = dict[str, Any]

RBAC_HINT = "manifests/rbac.yaml"
REQUEST_TIMEOUT = (10.0, 60.0)  # (connect, read) seconds per API call
LIST_PAGE = 500


@dataclass(frozen=True)
class Resource:
    """One kind as the official client reaches it: ``<op>_namespaced_<method>`` of its ``api`` class."""

    kind: str
    api_version: str  # list items come without apiVersion and kind: ``list`` fills them in
    resource: str  # the API's (and RBAC's) name for it: ``cronjobs.batch``
    api: str  # the client class: ``BatchV1Api``
    method: str  # ``cron_job``: ``list_namespaced_cron_job``, ``read_…``, ``patch_…``, ``delete_…``


RESOURCES = {
    r.kind: r
    for r in (
        Resource("ConfigMap", "v1", "configmaps", "CoreV1Api", "config_map"),
        Resource("CronJob", "batch/v1", "cronjobs.batch", "BatchV1Api", "cron_job"),
    )
}

# Status reasons that say the request may well succeed when sent again (``apimachinery/pkg/api/errors``).
_TRANSIENT = {
    "Conflict",
    "InternalError",
    "ServiceUnavailable",
    "Timeout",
    "ServerTimeout",
    "TooManyRequests",
}


class Cluster(Protocol):
    """What ``sync`` needs from a cluster. ``KubeCluster`` is the real one."""

    namespace: str
    context: str
    server: str

    def list(self, kind: str, selector: str) -> list[Obj]: ...
    def get(self, kind: str, name: str) -> Obj | None: ...
    def apply(self, obj: Obj, dry_run: bool, create: bool = False) -> None: ...
    def delete(self, kind: str, name: str, dry_run: bool) -> None: ...


@dataclass(frozen=True)
class Status:
    """The parts of an API error's ``Status`` body (``metav1.Status``) that messages use.

    ``reason`` is the machine-readable one (``Forbidden``, ``Conflict``, ``Invalid``; empty when the body is
    not a ``Status``, e.g. a proxy's page); ``message`` the server's text, else the HTTP reason phrase.
    """

    code: int
    reason: str
    message: str

    @classmethod
    def of(cls, exc: Any) -> Status:
        """From the client's ``ApiException``: ``body`` is the server's answer, ``status`` the HTTP code."""
        try:
            body = json.loads(exc.body) if exc.body else None
        except (TypeError, ValueError):
            body = None
        phrase = str(exc.reason or "").strip()
        if not isinstance(body, dict) or body.get("kind") != "Status":
            return cls(int(exc.status or 0), "", phrase)
        code = body.get("code") if isinstance(body.get("code"), int) else exc.status
        return cls(int(code or 0), str(body.get("reason") or ""), str(body.get("message") or phrase).strip())


class KubeCluster:
    """The official client, with every error translated into ``ClusterError`` where it enters."""

    def __init__(self, api_client: Any, namespace: str, context: str) -> None:
        import kubernetes.client

        self.api_client = api_client
        self.namespace = namespace
        self.context = context
        self.server = str(api_client.configuration.host)
        self._apis = {r.api: getattr(kubernetes.client, r.api)(api_client) for r in RESOURCES.values()}

    def close(self) -> None:
        self.api_client.close()

    # -- calls --------------------------------------------------------------------------------------------

    def list(self, kind: str, selector: str) -> list[Obj]:
        items: list[Obj] = []
        token: str | None = None
        while True:
            extra = {"_continue": token} if token else {}
            page = self._call(
                "list", "list", kind, None, self.namespace, label_selector=selector, limit=LIST_PAGE, **extra
            )
            for item in page.get("items") or []:
                item.setdefault("apiVersion", RESOURCES[kind].api_version)
                item.setdefault("kind", kind)
                items.append(item)
            token = (page.get("metadata") or {}).get("continue") or None
            if not token:
                return items

    def get(self, kind: str, name: str) -> Obj | None:
        try:
            return self._call("read", "get", kind, name, name, self.namespace)
        except ClusterError as exc:
            if exc.reason == "NotFound":
                return None
            raise

    def apply(self, obj: Obj, dry_run: bool, create: bool = False) -> None:
        """Server-side apply; ``create`` says the plan expects a new object (RBAC wants create too, then)."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        self._call(
            "patch",
            "create" if create else "patch",
            kind,
            name,
            name,
            self.namespace,
            obj,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
            **({"dry_run": "All"} if dry_run else {}),
        )

    def delete(self, kind: str, name: str, dry_run: bool) -> None:
        """Delete with background propagation (the Jobs go too); an object already gone is what we wanted."""
        from kubernetes.client import V1DeleteOptions

        body = V1DeleteOptions(propagation_policy="Background", dry_run=["All"] if dry_run else None)
        try:
            self._call("delete", "delete", kind, name, name, self.namespace, body=body)
        except ClusterError as exc:
            if exc.reason != "NotFound":
                raise

    # -- error translation --------------------------------------------------------------------------------

    def _call(self, op: str, verb: str, kind: str, name: str | None, *args: Any, **kwargs: Any) -> Obj:
        """``op`` of the client on ``kind`` (``RESOURCES``); ``verb`` is what messages call it."""
        import urllib3
        from kubernetes.client import ApiException

        res = RESOURCES[kind]
        call = getattr(self._apis[res.api], f"{op}_namespaced_{res.method}")
        try:
            response = call(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kwargs)
            data = response.data
        except ApiException as exc:
            if not exc.status:  # the client's own wrapper of a transport failure (TLS)
                raise self._unreachable(exc) from None
            raise self._api_error(Status.of(exc), verb, res, name) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unreachable(exc) from None
        try:
            decoded = json.loads(data) if data else {}
        except ValueError:
            raise ClusterError(
                f"the Kubernetes API at {self.server} answered {verb} {res.resource} with something that"
                " is not JSON; is --context pointing at a Kubernetes API server?"
            ) from None
        return decoded if isinstance(decoded, dict) else {}

    def _api_error(self, status: Status, verb: str, res: Resource, name: str | None) -> ClusterError:
        where = f'in namespace "{self.namespace}"'
        if status.code == 401:
            text = (
                f"unauthorized: the Kubernetes API at {self.server} rejected the credentials of context"
                f' "{self.context}" while trying to {verb} {res.resource} {where};'
                f" refresh the kubeconfig credentials (the permissions sync needs are in {RBAC_HINT})"
            )
            return ClusterError(text, status.code, status.reason or None)
        target = f"{res.resource}/{name}" if name else res.resource
        said = (
            f"{status.message or 'no message'} ({status.code}{' ' + status.reason if status.reason else ''})"
        )
        text = f"{_VERB_TEXT.get(verb, verb)} {target} {where} failed: {said}"
        if status.code == 403:
            needs = (
                "; an apply that creates an object needs create as well as patch" if verb == "create" else ""
            )
            text += (
                f"{needs}; the Role in {RBAC_HINT} grants what pullctl sync needs"
                f" (kubectl apply -n {self.namespace} -f {RBAC_HINT}, then bind it to this identity)"
            )
        elif status.reason in _TRANSIENT:
            text += "; the API server may accept it when sent again: run pullctl sync again"
        return ClusterError(text, status.code, status.reason or None)

    def _unreachable(self, exc: BaseException) -> ClusterError:
        return ClusterError(
            f'cannot reach the Kubernetes API server {self.server} of context "{self.context}":'
            f" {_reason(exc)}; check that the cluster is up and that --context/--kubeconfig point at it"
        )


_VERB_TEXT = {"patch": "apply (patch)"}


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
    kubeconfig: str | None = None,
    context: str | None = None,
    namespace: str | None = None,
    settings: Settings | None = None,
) -> KubeCluster:
    """A ``KubeCluster`` from a kubeconfig (``--kubeconfig``, else ``KUBECONFIG`` from ``settings``, else
    ``~/.kube/config``) or, with none of those and inside a pod (``settings.in_cluster``), the in-cluster
    config. The namespace: ``namespace``, else the context's, else the pod's, else ``default``."""
    import os

    import kubernetes
    import yaml

    settings = settings or Settings()
    path = kubeconfig or settings.kubeconfig or str(Path("~/.kube/config").expanduser())
    exists = any(Path(p).expanduser().is_file() for p in path.split(os.pathsep) if p)
    if kubeconfig is None and not exists and settings.in_cluster:
        if context:
            raise OptionsError(
                [("context", "needs a kubeconfig; inside a pod pullctl uses the in-cluster config")]
            )
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
            raise OptionsError([("context", f"'{context}': no such context in {path} (contexts: {names})")])
        api_client = kubernetes.config.new_client_from_config(
            config_file=path, context=chosen["name"], persist_config=False
        )
    except (kubernetes.config.ConfigException, OSError) as exc:
        raise ClusterError(f"cannot use the kubeconfig {path}: {exc}") from None
    except yaml.YAMLError as exc:  # the client's own YAML parse: one line, located
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ClusterError(f"cannot use the kubeconfig {path}: YAML syntax error{where}: {problem}") from None
    except (TypeError, AttributeError, KeyError, ValueError) as exc:  # valid YAML, not a kubeconfig's shape
        raise ClusterError(
            f"cannot use the kubeconfig {path}: not a kubeconfig ({type(exc).__name__}: {exc});"
            " check it with: kubectl config view"
        ) from None
    ns = namespace or (chosen.get("context") or {}).get("namespace") or "default"
    return KubeCluster(api_client, ns, str(chosen["name"]))

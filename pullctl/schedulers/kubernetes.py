"""Kubernetes CronJobs for scheduled pulls (DESIGN §6): ``render`` is pure, ``sync`` applies and prunes.

    load_sources(location)          -> [LoadedSource] (target "k8s": a DAPR-only schedule is an error)
    render(sources, RenderOptions)  -> [ConfigMap, CronJob, ...] as plain camelCase dicts; no I/O
    dump_yaml(objects)              -> one byte-stable YAML string (sorted keys, file contents as blocks)
    plan_sync(desired, live, ...)   -> [PlanEntry]: create / update / unchanged / delete (pure)
    sync(objects, cluster, ...)     -> SyncResult: the plan, applied by server-side apply, per-object errors

Every rendered object carries ``pullctl.dev/config-hash``: the sha256 of the object as rendered (without that
annotation). Image, namespace, DAPR, service account and the source config all feed it, so ``sync`` applies an
object exactly when its rendering changed and a no-change resync makes only the list calls.

``kubernetes`` (the official client) and ``urllib3`` are imported inside ``connect`` and the methods of
``KubeCluster``, never at module level: rendering never loads them. Their errors (``ApiException``, urllib3
connection errors) become ``ClusterError`` in ``KubeCluster._call``, kubeconfig errors in ``connect``.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml

from pullctl import __version__
from pullctl.canonical import canonical_hash
from pullctl.config.loader import LoadedSource
from pullctl.config.source import Scheduled
from pullctl.errors import ClusterError, ConfigError, Issue, UsageError
from pullctl.settings import env_name

Obj = dict[str, Any]
Action = Literal["create", "update", "unchanged", "delete", "keep"]

DEFAULT_IMAGE = f"pullctl:{__version__}"
DEFAULT_SET = "default"
DEFAULT_SERVICE_ACCOUNT = "pullctl-runner"
DEFAULT_STORE_SECRET = "pullctl-store"
STORE_SECRET_KEY = "url"
KUBERNETES_SECRET_STORE = "kubernetes"  # a named secret of this store is rendered as a secretKeyRef
FIELD_MANAGER = "pullctl"
CONFIG_DIR = "/etc/pullctl/sources"
RBAC_HINT = "manifests/rbac.yaml"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_SET = "pullctl.dev/set"
HASH_ANNOTATION = "pullctl.dev/config-hash"

RUN_AS_USER = 10001  # the Dockerfile's non-root user
STARTING_DEADLINE_SECONDS = 300
SUCCESSFUL_JOBS_HISTORY = 3
FAILED_JOBS_HISTORY = 3
BACKOFF_LIMIT = 2
TTL_SECONDS_AFTER_FINISHED = 86400
RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}
CONFIGMAP_MAX_BYTES = 1_000_000  # the API server refuses a ConfigMap above 1 MiB

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_KEY_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


# ----------------------------------------------------------------------------------------------------------
# Render options
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretRef:
    """Where a source's secret comes from in the cluster: ``Secret`` ``name``, data key ``key``."""

    name: str
    key: str

    @classmethod
    def parse(cls, text: str) -> tuple[str, SecretRef]:
        """``SECRET_KEY=NAME[/KEY]`` (the ``--secret-ref`` flag) -> (secret_key, SecretRef)."""
        secret_key, sep, ref = text.partition("=")
        name, _, key = ref.partition("/")
        if not sep or not secret_key or not name:
            raise UsageError(
                f"--secret-ref '{text}': expected SECRET_KEY=SECRET_NAME[/DATA_KEY],"
                " e.g. github-token=platform-secrets/github"
            )
        return secret_key, cls(name, key or secret_key)


@dataclass(frozen=True)
class RenderOptions:
    """What the rendered objects depend on besides the source configs. All of it feeds the config hash."""

    image: str = DEFAULT_IMAGE
    namespace: str | None = None
    set_name: str = DEFAULT_SET
    service_account: str = DEFAULT_SERVICE_ACCOUNT
    dapr: bool = False
    store_secret: str = DEFAULT_STORE_SECRET
    secret_refs: Mapping[str, SecretRef] = field(default_factory=dict)
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    env_from: tuple[str, ...] = ()  # "secret/NAME" or "configmap/NAME": every key becomes an env variable

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not self.image or any(c.isspace() for c in self.image):
            problems.append(
                f"--image {self.image!r}: expected an image reference like ghcr.io/org/pullctl:1.2.3"
            )
        if self.namespace is not None and not _valid_dns_label(self.namespace):
            problems.append(f"--namespace {self.namespace!r}: {_DNS_LABEL_HELP}")
        if not _valid_label_value(self.set_name) or not self.set_name:
            problems.append(f"--set-name {self.set_name!r}: {_LABEL_VALUE_HELP}")
        if not _valid_subdomain(self.service_account):
            problems.append(f"--service-account {self.service_account!r}: {_SUBDOMAIN_HELP}")
        if not _valid_subdomain(self.store_secret):
            problems.append(f"--store-secret {self.store_secret!r}: {_SUBDOMAIN_HELP}")
        for secret_key, ref in self.secret_refs.items():
            if not _valid_subdomain(ref.name):
                problems.append(f"--secret-ref {secret_key}: Secret name {ref.name!r}: {_SUBDOMAIN_HELP}")
            if not _CONFIG_KEY.match(ref.key):
                problems.append(f"--secret-ref {secret_key}: key {ref.key!r}: {_CONFIG_KEY_HELP}")
        for key, value in self.pod_labels.items():
            if not _valid_label_key(key):
                problems.append(f"--pod-label {key!r}: not a valid label key (prefix/name, name <= 63 chars)")
            elif key in _OWN_LABELS:
                problems.append(f"--pod-label {key!r}: pullctl sets this label itself")
            if not _valid_label_value(value):
                problems.append(f"--pod-label {key}={value!r}: {_LABEL_VALUE_HELP}")
        for source in self.env_from:
            kind, sep, name = source.partition("/")
            if not sep or kind not in ENV_FROM_KINDS:
                problems.append(f"--env-from {source!r}: expected secret/NAME or configmap/NAME")
            elif not _valid_subdomain(name):
                problems.append(f"--env-from {source!r}: {kind} name {name!r}: {_SUBDOMAIN_HELP}")
        if problems:
            raise UsageError("; ".join(problems))


def set_selector(set_name: str) -> str:
    """The label selector of the objects a set owns (what ``sync`` lists and may prune)."""
    return f"{LABEL_MANAGED_BY}=pullctl,{LABEL_SET}={set_name}"


_DNS_LABEL_HELP = "must be a lower-case DNS label (a-z, 0-9, '-'; at most 63 characters)"
_SUBDOMAIN_HELP = "must be a lower-case DNS subdomain (a-z, 0-9, '-', '.'; at most 253 characters)"
_LABEL_VALUE_HELP = "must be a label value: at most 63 of A-Z a-z 0-9 '-' '_' '.', alphanumeric at both ends"
_CONFIG_KEY_HELP = "must consist of A-Z a-z 0-9 '-' '_' '.'"
_OWN_LABELS = (LABEL_NAME, LABEL_MANAGED_BY, LABEL_INSTANCE, LABEL_SET)


def _valid_dns_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS_LABEL.match(value))


def _valid_subdomain(value: str) -> bool:
    return len(value) <= 253 and bool(_DNS_SUBDOMAIN.match(value))


def _valid_label_value(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_VALUE.match(value))


def _valid_label_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and not _valid_subdomain(prefix):
        return False
    return len(name) <= 63 and bool(_LABEL_KEY_NAME.match(name))


# ----------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------


def load_sources(location: str, only: Sequence[str] = (), database: str = "pullctl") -> Scheduled:
    """The ``scheduled_pull`` sources at ``location`` (all of them, or those named in ``only``), sorted by id.
    ``database`` is the MongoDB database when ``location`` is a ``mongodb://`` URL.

    Configs are validated for Kubernetes (``target="k8s"``, from files and from MongoDB alike): a schedule
    only DAPR understands is a located ``ConfigError`` that points at ``pullctl jobs sync``.
    """
    from pullctl.pipeline.config_store import open_config_source

    return open_config_source(location, database).scheduled("k8s", only=only)


# ----------------------------------------------------------------------------------------------------------
# Render (pure)
# ----------------------------------------------------------------------------------------------------------


def object_name(source_id: str) -> str:
    return f"pull-{source_id}"


def labels(source_id: str, options: RenderOptions) -> dict[str, str]:
    return {
        LABEL_NAME: "pullctl",
        LABEL_MANAGED_BY: "pullctl",
        LABEL_INSTANCE: source_id,
        LABEL_SET: options.set_name,
    }


def config_file_name(source_id: str) -> str:
    return f"{source_id}.yaml"


def render(sources: Sequence[LoadedSource], options: RenderOptions) -> list[Obj]:
    """ConfigMap and CronJob of every ``scheduled_pull`` source, sorted by source id. Pure."""
    objects: list[Obj] = []
    issues: list[Issue] = []
    for src in sorted(sources, key=lambda s: s.source_id):
        if not src.config.has_schedule:
            continue
        try:
            objects.extend(render_source(src, options))
        except ConfigError as exc:
            issues.extend(exc.issues)
    if issues:
        noun = "error" if len(issues) == 1 else "errors"
        raise ConfigError(f"{len(issues)} config {noun}:\n" + "\n".join(str(i) for i in issues), issues)
    return objects


def render_source(src: LoadedSource, options: RenderOptions) -> list[Obj]:
    """``[ConfigMap, CronJob]`` for one source, each with its config-hash annotation. Pure."""
    _check_k8s_schedule(src)
    return [_with_hash(_configmap(src, options)), _with_hash(_cronjob(src, options))]


def _check_k8s_schedule(src: LoadedSource) -> None:
    from pullctl.config.schedule import ScheduleError, parse_schedule

    schedule = src.config.ingestion.schedule
    assert schedule is not None, "validated: scheduled_pull has a schedule"
    try:
        parse_schedule(schedule, "k8s")
    except ScheduleError as exc:
        issue = Issue(src.file, src.line, 1, "ingestion.schedule", str(exc))
        raise ConfigError("", [issue]) from None


def _metadata(src: LoadedSource, options: RenderOptions) -> Obj:
    meta: Obj = {"name": object_name(src.source_id), "labels": labels(src.source_id, options)}
    if options.namespace:
        meta["namespace"] = options.namespace
    return meta


def _configmap(src: LoadedSource, options: RenderOptions) -> Obj:
    text = yaml.safe_dump(src.raw, sort_keys=False, allow_unicode=True, default_flow_style=False, width=4096)
    if len(text.encode()) > CONFIGMAP_MAX_BYTES:
        raise ConfigError(
            "",
            [
                Issue(
                    src.file,
                    src.line,
                    1,
                    "",
                    f"the config is {len(text.encode())} bytes; a ConfigMap holds at most"
                    f" {CONFIGMAP_MAX_BYTES} (move a long static items list to an MCP tool)",
                )
            ],
        )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(src, options),
        "data": {config_file_name(src.source_id): text},
    }


def _secret_env(src: LoadedSource, options: RenderOptions) -> list[Obj]:
    """One ``PULLCTL_SECRET_<STORE>_<KEY>`` from a ``secretKeyRef`` per secret the run resolves: the auth
    secret (any store), and each named secret of store ``kubernetes`` (others come from DAPR); one entry per
    variable when the two name the same secret."""
    ing = src.config.ingestion
    wanted: list[tuple[str, str, str]] = []  # (store, key, the field that names it)
    if ing.request is not None and ing.request.auth_type != "none":
        store, key = ing.request.secret_store, ing.request.secret_key
        assert store and key, "validated: auth needs secret_store and secret_key"
        wanted.append((store, key, "ingestion.request.secret_key"))
    for name, ref in ing.secrets.items():
        if ref.secret_store == KUBERNETES_SECRET_STORE:
            wanted.append((ref.secret_store, ref.secret_key, f"ingestion.secrets.{name}.secret_key"))
    env: dict[str, Obj] = {}
    for store, key, where in wanted:
        variable = env_name("PULLCTL_SECRET", store, key)
        env.setdefault(variable, _secret_key_ref(src, options, variable, key, where))
    return list(env.values())


def _secret_key_ref(src: LoadedSource, options: RenderOptions, variable: str, key: str, where: str) -> Obj:
    ref = options.secret_refs.get(key) or SecretRef(key, key)
    if not _valid_subdomain(ref.name) or not _CONFIG_KEY.match(ref.key):
        raise ConfigError(
            "",
            [
                Issue(
                    src.file,
                    src.line,
                    1,
                    where,
                    f"'{key}' is not usable as a Kubernetes Secret name and key ({_SUBDOMAIN_HELP});"
                    f" map it with --secret-ref {key}=<secret-name>/<key>",
                )
            ],
        )
    selector: Obj = {"name": ref.name, "key": ref.key}
    if options.dapr:
        # With a sidecar, the DAPR secret store is the fallback when the Secret is absent (DESIGN §4).
        selector["optional"] = True
    return {"name": variable, "valueFrom": {"secretKeyRef": selector}}


ENV_FROM_KINDS = {"secret": "secretRef", "configmap": "configMapRef"}


def _container(src: LoadedSource, options: RenderOptions) -> Obj:
    env: list[Obj] = [
        {"name": "PULLCTL_CONFIG", "value": f"{CONFIG_DIR}/{config_file_name(src.source_id)}"},
        {
            "name": "PULLCTL_STORE",
            "valueFrom": {"secretKeyRef": {"name": options.store_secret, "key": STORE_SECRET_KEY}},
        },
        {"name": "PULLCTL_LOG_FORMAT", "value": "json"},
        # `pullctl run` records this as the run's trigger (DESIGN §5); without it a CronJob run says "manual".
        {"name": "PULLCTL_TRIGGER", "value": "schedule"},
    ]
    if options.dapr:
        env.append({"name": "PULLCTL_DAPR_SHUTDOWN", "value": "1"})
    env.extend(_secret_env(src, options))
    container: Obj = {
        "name": "pullctl",
        "image": options.image,
        "args": ["run", src.source_id],
        "env": env,
        "resources": copy.deepcopy(RESOURCES),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        },
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if options.env_from:
        # Kubernetes lets ``env`` win over ``envFrom``: pullctl's own variables cannot be overridden here.
        container["envFrom"] = [
            {ENV_FROM_KINDS[kind]: {"name": name}}
            for kind, _, name in (ref.partition("/") for ref in options.env_from)
        ]
    return container


def _pod_template(src: LoadedSource, options: RenderOptions) -> Obj:
    meta: Obj = {"labels": {**options.pod_labels, **labels(src.source_id, options)}}
    if options.dapr:
        meta["annotations"] = {
            "dapr.io/enabled": "true",
            "dapr.io/app-id": object_name(src.source_id),
            "dapr.io/log-as-json": "true",
            "dapr.io/sidecar-seccomp-profile-type": "RuntimeDefault",
        }
    return {
        "metadata": meta,
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": options.service_account,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS_USER,
                "runAsGroup": RUN_AS_USER,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [_container(src, options)],
            "volumes": [
                {"name": "config", "configMap": {"name": object_name(src.source_id)}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
            ],
        },
    }


def _job_spec(src: LoadedSource, options: RenderOptions) -> Obj:
    ingestion = src.config.ingestion
    spec: Obj = {
        "backoffLimit": BACKOFF_LIMIT,
        "activeDeadlineSeconds": ingestion.deadline_seconds,
        "ttlSecondsAfterFinished": TTL_SECONDS_AFTER_FINISHED,
        # Exit 2 (config error) and 3 (partial: the rest is stored; `run --replay` retries the failed items)
        # are final; exit 1 (nothing fetched) may be a passing outage and is retried; evictions do not count.
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {"containerName": "pullctl", "operator": "In", "values": [2, 3]},
                },
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]
        },
        "template": _pod_template(src, options),
    }
    shards = ingestion.iteration.shards if ingestion.iteration else 1
    if shards > 1:  # pod i takes shard i of N (`pullctl run` reads JOB_COMPLETION_INDEX)
        spec.update(completionMode="Indexed", completions=shards, parallelism=shards)
    return spec


def _cronjob(src: LoadedSource, options: RenderOptions) -> Obj:
    ingestion = src.config.ingestion
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _metadata(src, options),
        "spec": {
            "schedule": ingestion.schedule,
            "timeZone": ingestion.timezone or "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": STARTING_DEADLINE_SECONDS,
            "successfulJobsHistoryLimit": SUCCESSFUL_JOBS_HISTORY,
            "failedJobsHistoryLimit": FAILED_JOBS_HISTORY,
            "suspend": not src.config.enabled,
            "jobTemplate": {
                "metadata": {"labels": labels(src.source_id, options)},
                "spec": _job_spec(src, options),
            },
        },
    }


def rendering_hash(obj: Obj) -> str:
    """sha256 of the canonical JSON of ``obj`` without its own config-hash annotation."""
    bare = copy.deepcopy(obj)
    annotations = bare.get("metadata", {}).get("annotations", {})
    annotations.pop(HASH_ANNOTATION, None)
    if not annotations:
        bare.get("metadata", {}).pop("annotations", None)
    return canonical_hash(bare)


def _with_hash(obj: Obj) -> Obj:
    obj["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = rendering_hash(obj)
    return obj


class _Dumper(yaml.SafeDumper):
    """``SafeDumper`` that writes multi-line strings (the ConfigMap's file) as literal blocks, so diffs are
    line by line; PyYAML falls back to a quoted scalar when a block cannot hold the text exactly."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(objects: Sequence[Obj]) -> str:
    """YAML documents, each starting with ``---``; sorted keys, so the bytes depend only on the objects."""
    if not objects:
        return ""
    return yaml.dump_all(
        objects,
        Dumper=_Dumper,
        sort_keys=True,
        explicit_start=True,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,
    )


def by_source(objects: Sequence[Obj]) -> dict[str, list[Obj]]:
    out: dict[str, list[Obj]] = {}
    for obj in objects:
        out.setdefault(obj["metadata"]["labels"][LABEL_INSTANCE], []).append(obj)
    return out


@dataclass(frozen=True)
class WrittenFiles:
    written: list[Path]
    removed: list[Path]


def write_files(objects: Sequence[Obj], out_dir: Path, options: RenderOptions, prune: bool) -> WrittenFiles:
    """One ``pull-<source_id>.yaml`` per source in ``out_dir`` (for GitOps). With ``prune``, a ``pull-*.yaml``
    of the same set whose source is no longer rendered is removed, so a deleted source leaves the repo too."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for source_id, objs in by_source(objects).items():
        path = out_dir / f"{object_name(source_id)}.yaml"
        text = dump_yaml(objs)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    removed: list[Path] = []
    if prune:
        keep = set(written)
        for path in sorted(out_dir.glob("pull-*.yaml")):
            if path not in keep and _owned_file(path, options.set_name):
                path.unlink()
                removed.append(path)
    return WrittenFiles(written, removed)


def _owned_file(path: Path, set_name: str) -> bool:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return bool(docs) and all(
        isinstance(d, dict)
        and isinstance(d.get("metadata"), dict)
        and isinstance(d["metadata"].get("labels"), dict)
        and d["metadata"]["labels"].get(LABEL_MANAGED_BY) == "pullctl"
        and d["metadata"]["labels"].get(LABEL_SET) == set_name
        for d in docs
    )


# ----------------------------------------------------------------------------------------------------------
# Plan (pure)
# ----------------------------------------------------------------------------------------------------------

KINDS = ("ConfigMap", "CronJob")  # apply order: a CronJob never starts without its ConfigMap
_RESOURCE = {"ConfigMap": "configmaps", "CronJob": "cronjobs.batch"}


@dataclass
class PlanEntry:
    """One object of the plan and, after ``sync``, what became of it (``error`` None: done)."""

    kind: str
    name: str
    action: Action
    source_id: str | None = None
    diff: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.kind.lower()}/{self.name}"

    @property
    def writes(self) -> bool:
        return self.action in ("create", "update", "delete")

    def to_dict(self) -> Obj:
        return {
            "kind": self.kind,
            "name": self.name,
            "source_id": self.source_id,
            "action": self.action,
            "diff": self.diff,
            "error": self.error,
        }


def _key(obj: Obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _hash_of(obj: Obj) -> str | None:
    value = (obj.get("metadata", {}).get("annotations") or {}).get(HASH_ANNOTATION)
    return value if isinstance(value, str) else None


def plan_sync(
    desired: Sequence[Obj], live: Sequence[Obj], *, prune: bool, diff: bool = False
) -> list[PlanEntry]:
    """Compare the rendered objects with the set's live objects by config hash. Pure.

    ``live`` must hold only objects the set owns (the label-selected lists). Owned objects that are no longer
    rendered are ``delete`` with ``prune``, else ``keep``. Entries come sorted by name, then kind.
    """
    live_by_key = {_key(o): o for o in live}
    desired_keys = {_key(o) for o in desired}
    entries: list[PlanEntry] = []
    for obj in desired:
        source_id = obj["metadata"]["labels"].get(LABEL_INSTANCE)
        current = live_by_key.get(_key(obj))
        if current is None:
            entries.append(PlanEntry(obj["kind"], obj["metadata"]["name"], "create", source_id))
        elif _hash_of(current) != _hash_of(obj):
            changes = field_diff(obj, current) if diff else []
            entries.append(PlanEntry(obj["kind"], obj["metadata"]["name"], "update", source_id, changes))
        else:
            entries.append(PlanEntry(obj["kind"], obj["metadata"]["name"], "unchanged", source_id))
    for key, obj in live_by_key.items():
        if key not in desired_keys:
            source_id = (obj.get("metadata", {}).get("labels") or {}).get(LABEL_INSTANCE)
            entries.append(PlanEntry(key[0], key[1], "delete" if prune else "keep", source_id))
    entries.sort(key=lambda e: (e.name, KINDS.index(e.kind) if e.kind in KINDS else 9))
    return entries


# -- field-level diff ------------------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _child(path: str, key: str) -> str:
    if _PLAIN_KEY.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def _flatten(value: Any, path: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Leaf paths of an object: maps by key, lists of named maps by ``[name=...]``, other lists whole."""
    out = {} if out is None else out
    if isinstance(value, dict) and value:
        for key in value:
            _flatten(value[key], _child(path, str(key)), out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        for item in value:
            _flatten(item, f"{path}[name={item['name']}]", out)
    else:
        out[path] = value
    return out


def _owned_paths(live: Obj, manager: str = FIELD_MANAGER) -> set[str]:
    """Leaf paths the manager's last apply set (``managedFields``, FieldsV1), named as ``_flatten`` does."""
    paths: set[str] = set()

    def walk(node: Obj, path: str) -> None:
        children = [k for k in node if k != "."]
        if not children:
            paths.add(path)
            return
        for key in children:
            if key.startswith("f:"):
                walk(node[key] or {}, _child(path, key[2:]))
            elif key.startswith("k:"):
                try:
                    ident = json.loads(key[2:])
                except ValueError:
                    paths.add(path)
                    continue
                if isinstance(ident, dict) and set(ident) == {"name"}:
                    walk(node[key] or {}, f"{path}[name={ident['name']}]")
                else:
                    paths.add(path)
            else:  # v: (a set-list value) or i: (an index): the list counts as one field here
                paths.add(path)

    for entry in live.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            walk(entry.get("fieldsV1") or {}, "")
    return paths


def _prefixes(path: str) -> Iterator[str]:
    """``a.b[name=x].c`` -> ``a``, ``a.b``, ``a.b[name=x]``, ``a.b[name=x].c`` (whole segments only)."""
    for i, ch in enumerate(path):
        if ch in ".[" and i:
            yield path[:i]
    yield path


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def field_diff(desired: Obj, live: Obj) -> list[str]:
    """Field-level changes from ``live`` to ``desired``: ``~ path: old -> new``, ``+ path: new``, ``- path``.

    Only fields pullctl sets are compared (server defaults and status are not changes); a field pullctl set
    before and no longer renders is a removal. The config-hash annotation itself is left out.
    """
    skip = _child(_child(_child("", "metadata"), "annotations"), HASH_ANNOTATION)
    want = _flatten(desired)
    have = _flatten({k: v for k, v in live.items() if k != "status"})
    changes: dict[str, list[str]] = {}  # path -> its lines, printed in path order
    for path, new in want.items():
        if path == skip:
            continue
        if path not in have:
            changes[path] = [f"+ {path}: {_show(new)}"]
        elif have[path] != new:
            old = have[path]
            if isinstance(old, str) and isinstance(new, str) and ("\n" in old or "\n" in new):
                body = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=1)
                changes[path] = [f"~ {path}:", *(f"    {line}" for line in list(body)[2:])]
            else:
                changes[path] = [f"~ {path}: {_show(old)} -> {_show(new)}"]
    kept = {prefix for p in want for prefix in _prefixes(p)}
    for path in _owned_paths(live):
        if path and path != skip and path not in kept and path in have:
            changes[path] = [f"- {path}"]
    return [line for path in sorted(changes) for line in changes[path]]


# ----------------------------------------------------------------------------------------------------------
# The cluster (the one place that talks to the Kubernetes API)
# ----------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------
# Sync
# ----------------------------------------------------------------------------------------------------------


@dataclass
class SyncResult:
    namespace: str
    context: str
    server: str
    set_name: str
    dry_run: bool
    server_dry_run: bool
    entries: list[PlanEntry]
    seconds: float = 0.0

    @property
    def failed(self) -> list[PlanEntry]:
        return [e for e in self.entries if e.error is not None]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(("create", "update", "unchanged", "delete", "keep", "failed"), 0)
        for e in self.entries:
            out[e.action] += 1
        out["failed"] = len(self.failed)
        return out

    def to_dict(self) -> Obj:
        return {
            "namespace": self.namespace,
            "context": self.context,
            "server": self.server,
            "set": self.set_name,
            "dry_run": self.dry_run,
            "server_dry_run": self.server_dry_run,
            "counts": self.counts(),
            "objects": [e.to_dict() for e in self.entries],
        }


def sync(
    objects: Sequence[Obj],
    cluster: Cluster,
    *,
    set_name: str = DEFAULT_SET,
    prune: bool = True,
    dry_run: bool = False,
    server_dry_run: bool = False,
    diff: bool = False,
    on_plan: Callable[[SyncResult], None] | None = None,
) -> SyncResult:
    """Converge the cluster's objects of ``set_name`` to ``objects`` (rendered for ``cluster.namespace``).

    One list per kind (by the set's label selector), then a ``get`` per planned create (an object of that name
    the set does not own is never taken over: that entry fails). ``on_plan`` sees the plan before anything is
    written. ``dry_run`` stops there; ``server_dry_run`` sends every write with ``dryRun=All``. A failed
    object is recorded in its entry and the rest still go; listing failures raise ``ClusterError``.
    """
    started = time.monotonic()
    selector = set_selector(set_name)
    for obj in objects:
        ns = obj["metadata"].get("namespace")
        if ns != cluster.namespace:
            raise UsageError(
                f"{obj['kind']} {obj['metadata']['name']} is rendered for namespace {ns!r},"
                f" not {cluster.namespace!r}"
            )
    live = [o for kind in KINDS for o in cluster.list(kind, selector)]
    entries = plan_sync(objects, live, prune=prune, diff=diff)
    for entry in entries:
        if entry.action == "create":
            found = cluster.get(entry.kind, entry.name)
            if found is not None:
                entry.error = _not_ours(entry, found, cluster.namespace, set_name)
    result = SyncResult(
        cluster.namespace,
        cluster.context,
        cluster.server,
        set_name,
        dry_run and not server_dry_run,
        server_dry_run,
        entries,
    )
    if on_plan is not None:
        on_plan(result)
    if result.dry_run:
        result.seconds = time.monotonic() - started
        return result
    wanted = {_key(o): o for o in objects}
    failed_configmaps: set[str] = set()
    for entry in _apply_order(entries):
        if entry.kind == "CronJob" and entry.action != "delete" and entry.name in failed_configmaps:
            # Its pods would mount a ConfigMap that is stale or not ours: leave the CronJob as it is.
            entry.error = f"not applied because configmap/{entry.name} failed"
        if entry.error is None:
            try:
                if entry.action == "delete":
                    cluster.delete(entry.kind, entry.name, server_dry_run)
                else:
                    cluster.apply(wanted[(entry.kind, entry.name)], server_dry_run, entry.action == "create")
            except ClusterError as exc:
                entry.error = exc.message
        if entry.error is not None and entry.kind == "ConfigMap":
            failed_configmaps.add(entry.name)
    result.seconds = time.monotonic() - started
    return result


def _apply_order(entries: Sequence[PlanEntry]) -> Iterator[PlanEntry]:
    """ConfigMaps before CronJobs when writing, CronJobs before ConfigMaps when deleting."""
    writes = [e for e in entries if e.action in ("create", "update")]
    yield from sorted(writes, key=lambda e: KINDS.index(e.kind))
    deletes = [e for e in entries if e.action == "delete"]
    yield from sorted(deletes, key=lambda e: -KINDS.index(e.kind) if e.kind in KINDS else 0)


def _not_ours(entry: PlanEntry, found: Obj, namespace: str, set_name: str) -> str:
    found_labels = (found.get("metadata") or {}).get("labels") or {}
    if found_labels.get(LABEL_MANAGED_BY) == "pullctl" and found_labels.get(LABEL_SET) != set_name:
        owner = f"pullctl set '{found_labels.get(LABEL_SET)}'"
    else:
        owner = f"something else (it lacks the labels {LABEL_MANAGED_BY}=pullctl,{LABEL_SET}={set_name})"
    return (
        f'{entry.ref} already exists in namespace "{namespace}" and belongs to {owner}; pullctl does not take'
        " over objects it does not own: delete or rename that object, or sync with that --set-name"
    )


# ----------------------------------------------------------------------------------------------------------
# Entry points (what the CLI calls)
# ----------------------------------------------------------------------------------------------------------


def render_configs(
    location: str,
    options: RenderOptions,
    only: Sequence[str] = (),
    database: str = "pullctl",
    on_note: Callable[[str], None] | None = None,
) -> list[Obj]:
    """Load the configs at ``location`` and render all scheduled sources, or those in ``only``; ``on_note``
    hears which sources were skipped (no schedule)."""
    sources = load_sources(location, only, database)
    _note(sources, on_note)
    return render(sources, options)


def _note(sources: Scheduled, on_note: Callable[[str], None] | None) -> None:
    for note in sources.notes():
        if on_note is not None:
            on_note(note)


def sync_configs(
    location: str,
    options: RenderOptions,
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    prune: bool = True,
    dry_run: bool = False,
    server_dry_run: bool = False,
    diff: bool = False,
    on_plan: Callable[[SyncResult], None] | None = None,
    database: str = "pullctl",
    on_note: Callable[[str], None] | None = None,
) -> SyncResult:
    """Load and validate the configs (a config error stops here, before the cluster is contacted), connect,
    render for the cluster's namespace (``options.namespace``, else the context's) and ``sync``."""
    from dataclasses import replace

    sources = load_sources(location, database=database)
    _note(sources, on_note)
    cluster = connect(kubeconfig, context, options.namespace)
    try:
        objects = render(sources, replace(options, namespace=cluster.namespace))
        return sync(
            objects,
            cluster,
            set_name=options.set_name,
            prune=prune,
            dry_run=dry_run,
            server_dry_run=server_dry_run,
            diff=diff,
            on_plan=on_plan,
        )
    finally:
        cluster.close()

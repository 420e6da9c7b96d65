"""Render (pure): configs -> ConfigMap and CronJob dicts (camelCase, as the API takes them) -> a YAML string.

Every rendered object carries ``pullctl.dev/config-hash``: the sha256 of the object as rendered (without that
annotation). Image, namespace, DAPR, service account and the source config all feed it, so ``sync`` applies an
object exactly when its rendering changed.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import yaml

from pullctl.canonical import canonical_hash
from pullctl.config.loader import LoadedSource
from pullctl.config.models import STATIC_AUTH
from pullctl.errors import ConfigError, Issue
from pullctl.pipeline.state_key import STATE_KEY_VAR
from pullctl.schedulers.kubernetes.options import (
    CONFIG_KEY,
    ENV_FROM_KINDS,
    HASH_ANNOTATION,
    SUBDOMAIN_HELP,
    RenderOptions,
    SecretRef,
    config_file_name,
    labels,
    object_name,
    valid_subdomain,
)
from pullctl.settings import env_name

Obj = dict[str, Any]

STORE_SECRET_KEY = "url"
KUBERNETES_SECRET_STORE = "kubernetes"  # a named secret of this store is rendered as a secretKeyRef
STATE_KEY_SECRET = "pullctl-state-key"  # Secret (and key) of PULLCTL_STATE_KEY, for rotating refresh tokens
CONFIG_DIR = "/etc/pullctl/sources"

RUN_AS_USER = 10001  # the Dockerfile's non-root user
STARTING_DEADLINE_SECONDS = 300
SUCCESSFUL_JOBS_HISTORY = 3
FAILED_JOBS_HISTORY = 3
BACKOFF_LIMIT = 2
TTL_SECONDS_AFTER_FINISHED = 86400
RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}
CONFIGMAP_MAX_BYTES = 1_000_000  # the API server refuses a ConfigMap above 1 MiB


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
    """The source's config, and each parent's (``iteration.from_source``: the run fetches the parents' pages
    with their own configs), one file each."""
    data = {
        config_file_name(s.source_id): yaml.safe_dump(
            s.raw, sort_keys=False, allow_unicode=True, default_flow_style=False, width=4096
        )
        for s in (src, *src.parents)
    }
    size = sum(len(text.encode()) for text in data.values())
    if size > CONFIGMAP_MAX_BYTES:
        raise ConfigError(
            "",
            [
                Issue(
                    src.file,
                    src.line,
                    1,
                    "",
                    f"the config{' with its parents' if src.parents else ''} is {size} bytes; a ConfigMap"
                    f" holds at most"
                    f" {CONFIGMAP_MAX_BYTES} (move a long static items list to an MCP tool)",
                )
            ],
        )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(src, options),
        "data": data,
    }


def _secret_env(src: LoadedSource, options: RenderOptions) -> list[Obj]:
    """One ``PULLCTL_SECRET_<STORE>_<KEY>`` from a ``secretKeyRef`` per secret the run resolves: the auth
    secret (any store), and each named secret of store ``kubernetes`` (others come from DAPR), of the source
    and of each of its parents (the run fetches their pages too); one entry per variable when two name the
    same secret. A rotating refresh-token grant also gets ``PULLCTL_STATE_KEY`` (never optional: no DAPR store
    stands in for it, and a run without it fails before its token request)."""
    env: dict[str, Obj] = {}
    for owner in (src, *src.parents):
        ing = owner.config.ingestion
        wanted: list[tuple[str, str, str]] = []  # (store, key, the field that names it)
        if ing.request is not None and ing.request.auth_type in STATIC_AUTH:
            store, key = ing.request.secret_store, ing.request.secret_key
            assert store and key, "validated: auth needs secret_store and secret_key"
            wanted.append((store, key, "ingestion.request.secret_key"))
        for name, ref in ing.secrets.items():
            if ref.secret_store == KUBERNETES_SECRET_STORE:
                wanted.append((ref.secret_store, ref.secret_key, f"ingestion.secrets.{name}.secret_key"))
        for store, key, where in wanted:
            variable = env_name("PULLCTL_SECRET", store, key)
            env.setdefault(variable, _secret_key_ref(owner, options, variable, key, where))
        if ing.request is not None and ing.request.rotates_refresh_token:
            where = "ingestion.request.oauth2.rotation"
            env.setdefault(
                STATE_KEY_VAR,
                _secret_key_ref(owner, options, STATE_KEY_VAR, STATE_KEY_SECRET, where, fallback=False),
            )
    return list(env.values())


def _secret_key_ref(
    src: LoadedSource, options: RenderOptions, variable: str, key: str, where: str, fallback: bool = True
) -> Obj:
    ref = options.secret_refs.get(key) or SecretRef(key, key)
    if not valid_subdomain(ref.name) or not CONFIG_KEY.match(ref.key):
        raise ConfigError(
            "",
            [
                Issue(
                    src.file,
                    src.line,
                    1,
                    where,
                    f"'{key}' is not usable as a Kubernetes Secret name and key ({SUBDOMAIN_HELP});"
                    f" map it with --secret-ref {key}=<secret-name>/<key>",
                )
            ],
        )
    selector: Obj = {"name": ref.name, "key": ref.key}
    if options.dapr and fallback:
        # With a sidecar, the DAPR secret store is the fallback when the Secret is absent (DESIGN §4).
        selector["optional"] = True
    return {"name": variable, "valueFrom": {"secretKeyRef": selector}}


def _container(src: LoadedSource, options: RenderOptions) -> Obj:
    env: list[Obj] = [
        # a child's parents' configs are files beside its own: the run loads the folder
        {
            "name": "PULLCTL_CONFIG",
            "value": CONFIG_DIR if src.parents else f"{CONFIG_DIR}/{config_file_name(src.source_id)}",
        },
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

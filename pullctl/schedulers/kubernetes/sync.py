"""Sync: converge the cluster's objects of a set to the rendered ones (server-side apply); prune the rest."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pullctl.errors import ClusterError, UsageError
from pullctl.schedulers.kubernetes.cluster import Cluster, connect
from pullctl.schedulers.kubernetes.options import (
    DEFAULT_SET,
    LABEL_MANAGED_BY,
    LABEL_SET,
    RenderOptions,
    set_selector,
)
from pullctl.schedulers.kubernetes.plan import KINDS, PlanEntry, key_of, plan_sync
from pullctl.schedulers.kubernetes.render import render
from pullctl.schedulers.kubernetes.sources import load_sources, note
from pullctl.settings import Settings

Obj = dict[str, Any]


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
    _check_namespace(objects, cluster.namespace)
    live = [o for kind in KINDS for o in cluster.list(kind, set_selector(set_name))]
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
    if not result.dry_run:
        _apply(entries, objects, cluster, server_dry_run)
    result.seconds = time.monotonic() - started
    return result


def _check_namespace(objects: Sequence[Obj], namespace: str) -> None:
    for obj in objects:
        ns = obj["metadata"].get("namespace")
        if ns != namespace:
            raise UsageError(
                f"{obj['kind']} {obj['metadata']['name']} is rendered for namespace {ns!r}, not {namespace!r}"
            )


# A CronJob's pods mount the ConfigMap of the same name: when that failed, the CronJob is left as it is.
_NEEDS = {"CronJob": "ConfigMap"}


def _apply(entries: Sequence[PlanEntry], objects: Sequence[Obj], cluster: Cluster, dry_run: bool) -> None:
    """Write the plan in ``_apply_order``; a failure is recorded in its entry and the rest still go."""
    wanted = {key_of(o): o for o in objects}
    failed: set[tuple[str, str]] = set()
    for entry in _apply_order(entries):
        needed = _NEEDS.get(entry.kind)
        if needed and entry.action != "delete" and (needed, entry.name) in failed:
            entry.error = f"not applied because {needed.lower()}/{entry.name} failed"
        if entry.error is None:
            try:
                if entry.action == "delete":
                    cluster.delete(entry.kind, entry.name, dry_run)
                else:
                    cluster.apply(wanted[(entry.kind, entry.name)], dry_run, entry.action == "create")
            except ClusterError as exc:
                entry.error = exc.message
        if entry.error is not None:
            failed.add((entry.kind, entry.name))


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
    settings: Settings | None = None,
) -> SyncResult:
    """Load and validate the configs (a config error stops here, before the cluster is contacted), connect,
    render for the cluster's namespace (``options.namespace``, else the context's) and ``sync``."""
    from dataclasses import replace

    sources = load_sources(location, database=database)
    note(sources, on_note)
    cluster = connect(kubeconfig, context, options.namespace, settings)
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

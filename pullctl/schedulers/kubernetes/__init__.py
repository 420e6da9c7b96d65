"""Kubernetes CronJobs for scheduled pulls (DESIGN §6): rendering is pure, ``sync`` applies and prunes.

    options.py   RenderOptions (validated), names and labels of the objects
    sources.py   load_sources -> the scheduled sources (target "k8s"); render_configs = load + render
    render.py    render(sources, options) -> [ConfigMap, CronJob, ...]; dump_yaml -> one stable YAML string
    files.py     write_files: ``render --out DIR``, one file per source
    plan.py      plan_sync(desired, live) -> [PlanEntry] (pure); field_diff from managedFields
    cluster.py   KubeCluster, connect: the one place that talks to the API (the client is imported lazily)
    sync.py      sync(objects, cluster) -> SyncResult; sync_configs = load + connect + render + sync

Every rendered object carries ``pullctl.dev/config-hash`` (render.py), so a no-change resync makes only the
list calls.
"""

from pullctl.schedulers.kubernetes.cluster import KubeCluster, connect
from pullctl.schedulers.kubernetes.files import WrittenFiles, write_files
from pullctl.schedulers.kubernetes.options import (
    DEFAULT_IMAGE,
    HASH_ANNOTATION,
    RenderOptions,
    SecretRef,
)
from pullctl.schedulers.kubernetes.plan import PlanEntry, field_diff, plan_sync
from pullctl.schedulers.kubernetes.render import dump_yaml, render, rendering_hash
from pullctl.schedulers.kubernetes.sources import load_sources, render_configs
from pullctl.schedulers.kubernetes.sync import SyncResult, sync, sync_configs

__all__ = [
    "DEFAULT_IMAGE",
    "HASH_ANNOTATION",
    "KubeCluster",
    "PlanEntry",
    "RenderOptions",
    "SecretRef",
    "SyncResult",
    "WrittenFiles",
    "connect",
    "dump_yaml",
    "field_diff",
    "load_sources",
    "plan_sync",
    "render",
    "render_configs",
    "rendering_hash",
    "sync",
    "sync_configs",
    "write_files",
]

"""Kubernetes CronJobs for scheduled pulls (DESIGN §6): rendering is pure, ``sync`` applies and prunes.

    options.py   RenderOptions (validated; OptionsError names fields), names and labels of the objects
    sources.py   load_sources -> the scheduled sources (target "k8s"); render_configs = load + render
    render.py    render(sources, options) -> [ConfigMap, CronJob, ...]; dump_yaml -> one stable YAML string
    files.py     write_files: ``render --out DIR``, one file per source
    plan.py      plan_sync(desired, live) -> [PlanEntry] (pure); field_diff from managedFields
    cluster.py   KubeCluster, connect: the one place that talks to the API (the client is imported lazily)
    sync.py      sync(objects, cluster) -> SyncResult; sync_configs = load + connect + render + sync

Import from the module that holds a name; this package re-exports nothing, so importing one module (the CLI's
``options``) loads no more than it needs. Every rendered object carries ``pullctl.dev/config-hash``
(render.py), so a no-change resync makes only the list calls.
"""

"""`pullctl render` and `pullctl sync`: one Kubernetes CronJob (+ ConfigMap) per scheduled_pull source."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pullctl.cli import output
from pullctl.cli.options import ConfigOption, OutputOption
from pullctl.cli.output import OutputFormat

if TYPE_CHECKING:
    from pullctl.schedulers.kubernetes.options import RenderOptions
    from pullctl.schedulers.kubernetes.sync import SyncResult

_DEFAULT_IMAGE = "pullctl:<version>"
ImageOption = Annotated[
    str | None,
    typer.Option(help=f"Container image the CronJobs run [default: {_DEFAULT_IMAGE}]", show_default=False),
]
NamespaceOption = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        "-n",
        help="Namespace of the objects [render default: none set; sync default: the context's namespace]",
        show_default=False,
    ),
]
SetNameOption = Annotated[
    str, typer.Option(help="Set label (pullctl.dev/set): sync prunes only objects of its own set")
]
ServiceAccountOption = Annotated[str, typer.Option(help="ServiceAccount the pull pods run as")]
DaprOption = Annotated[
    bool, typer.Option("--dapr", help="Add the DAPR sidecar; `run` shuts it down when it exits")
]
StoreSecretOption = Annotated[
    str, typer.Option(help="Secret whose key 'url' holds PULLCTL_STORE (e.g. mongodb://…)")
]
SecretRefOption = Annotated[
    list[str] | None,
    typer.Option(
        help="Take secret_key from another Secret: SECRET_KEY=SECRET_NAME[/KEY]"
        " [default: Secret and key named like secret_key]",
        metavar="SECRET_KEY=NAME[/KEY]",
        show_default=False,
    ),
]
EnvFromOption = Annotated[
    list[str] | None,
    typer.Option(
        help="Every key of a Secret or ConfigMap as env variables of the pull pods,"
        " e.g. configmap/egress-proxy for HTTPS_PROXY and NO_PROXY",
        metavar="secret/NAME|configmap/NAME",
        show_default=False,
    ),
]
PodLabelOption = Annotated[
    list[str] | None,
    typer.Option(
        help="Extra pod label, e.g. azure.workload.identity/use=true", metavar="KEY=VALUE", show_default=False
    ),
]


def _options(
    image: str | None,
    namespace: str | None,
    set_name: str,
    service_account: str,
    dapr: bool,
    store_secret: str,
    secret_ref: list[str] | None,
    pod_label: list[str] | None,
    env_from: list[str] | None,
) -> RenderOptions:
    from pullctl.errors import UsageError
    from pullctl.schedulers.kubernetes.options import DEFAULT_IMAGE, RenderOptions, SecretRef

    labels: dict[str, str] = {}
    for text in pod_label or []:
        key, sep, value = text.partition("=")
        if not sep:
            raise UsageError(f"--pod-label '{text}': expected KEY=VALUE")
        labels[key] = value
    return RenderOptions(
        image=image or DEFAULT_IMAGE,
        namespace=namespace,
        set_name=set_name,
        service_account=service_account,
        dapr=dapr,
        store_secret=store_secret,
        secret_refs=dict(SecretRef.parse(t) for t in secret_ref or []),
        pod_labels=labels,
        env_from=tuple(env_from or ()),
    )


def render(
    sources: Annotated[
        list[str] | None,
        typer.Argument(help="Source ids to render [default: every scheduled_pull source]", metavar="SOURCE"),
    ] = None,
    config: ConfigOption = None,
    image: ImageOption = None,
    namespace: NamespaceOption = None,
    set_name: SetNameOption = "default",
    service_account: ServiceAccountOption = "pullctl-runner",
    dapr: DaprOption = False,
    store_secret: StoreSecretOption = "pullctl-store",
    secret_ref: SecretRefOption = None,
    pod_label: PodLabelOption = None,
    env_from: EnvFromOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write pull-<source_id>.yaml per source into DIR (and remove those of deleted sources)",
            metavar="DIR",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print the ConfigMap and CronJob of every scheduled_pull source as YAML, byte-for-byte stable (GitOps).

    Example: pullctl render --image ghcr.io/acme/pullctl:1.4.0 --namespace pulls --out deploy/pulls
    """
    from pullctl.schedulers.kubernetes.files import write_files
    from pullctl.schedulers.kubernetes.render import dump_yaml
    from pullctl.schedulers.kubernetes.sources import render_configs
    from pullctl.settings import Settings

    options = _options(
        image, namespace, set_name, service_account, dapr, store_secret, secret_ref, pod_label, env_from
    )
    settings = Settings.from_env(config=config)
    objects = render_configs(
        settings.config, options, sources or (), settings.mongodb_database, on_note=_note
    )
    if out is None:
        typer.echo(dump_yaml(objects), nl=False)
        return
    files = write_files(objects, out, options, prune=not sources)
    for path in files.removed:
        output.stderr.print(f"removed {path}", markup=False)
    output.stderr.print(f"wrote {output.plural(len(files.written), 'file')} to {out}", markup=False)


def sync(
    config: ConfigOption = None,
    image: ImageOption = None,
    namespace: NamespaceOption = None,
    set_name: SetNameOption = "default",
    service_account: ServiceAccountOption = "pullctl-runner",
    dapr: DaprOption = False,
    store_secret: StoreSecretOption = "pullctl-store",
    secret_ref: SecretRefOption = None,
    pod_label: PodLabelOption = None,
    env_from: EnvFromOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing")] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Show field-level changes of each update")] = False,
    server_dry_run: Annotated[
        bool, typer.Option("--server-dry-run", help="Send every write with dryRun=All: the server checks it")
    ] = False,
    prune: Annotated[
        bool, typer.Option(help="Delete owned objects whose source is gone or no longer scheduled_pull")
    ] = True,
    context: Annotated[
        str | None, typer.Option(help="kubeconfig context [default: current]", show_default=False)
    ] = None,
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            help="kubeconfig file [default: $KUBECONFIG, ~/.kube/config, in-cluster]", show_default=False
        ),
    ] = None,
    fmt: OutputOption = OutputFormat.text,
) -> None:
    """Apply the CronJobs to the cluster (server-side apply) and prune what this set no longer renders.

    Exit 0 when every object converged, 1 when any failed (the rest are still applied), 2 on config errors.

    Example: pullctl sync --context prod --namespace pulls --image ghcr.io/acme/pullctl:1.4.0 --diff
    """
    from pullctl.schedulers.kubernetes.sync import sync_configs
    from pullctl.settings import Settings

    options = _options(
        image, namespace, set_name, service_account, dapr, store_secret, secret_ref, pod_label, env_from
    )
    settings = Settings.from_env(config=config)
    result = sync_configs(
        settings.config,
        options,
        kubeconfig=kubeconfig,
        context=context,
        prune=prune,
        dry_run=dry_run,
        server_dry_run=server_dry_run,
        diff=diff,
        on_plan=_print_plan if fmt is OutputFormat.text else None,
        database=settings.mongodb_database,
        on_note=_note,
        settings=settings,
    )
    if fmt is OutputFormat.json:
        output.print_json(result.to_dict())
    _print_outcome(result)
    if result.failed:
        raise typer.Exit(1)


def _note(text: str) -> None:
    output.stderr.print(text, markup=False)


def _print_plan(result: SyncResult) -> None:
    for entry in result.entries:
        note = "  (not pruned: --no-prune)" if entry.action == "keep" else ""
        typer.echo(f"{entry.action:<10} {entry.ref}{note}")
        for line in entry.diff:
            typer.echo(f"    {line}")


def _print_outcome(result: SyncResult) -> None:
    for entry in result.failed:
        output.error(f"{entry.ref}: {entry.error}")
    c = result.counts()
    where = f'namespace "{result.namespace}" (context "{result.context}", set "{result.set_name}")'
    if result.dry_run or result.server_dry_run:
        head = (
            "dry run, nothing applied" if result.dry_run else "server dry run (dryRun=All), nothing persisted"
        )
        summary = (
            f"{head} in {where}: {c['create']} to create, {c['update']} to update,"
            f" {c['unchanged']} unchanged, {c['delete']} to delete"
        )
    else:
        summary = (
            f"{where}: {c['create']} created, {c['update']} updated, {c['unchanged']} unchanged,"
            f" {c['delete']} deleted"
        )
    output.plan_outcome(
        summary, keep=c["keep"], failed=len(result.failed), total=len(result.entries), seconds=result.seconds
    )

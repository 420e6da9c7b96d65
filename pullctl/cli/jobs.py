"""`pullctl jobs sync|list|delete`: one DAPR Job per scheduled_pull source, through the DAPR sidecar."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from pullctl.cli import output
from pullctl.cli.options import (
    ConfigOption,
    OutputOption,
    StoreOption,
    TableOutputOption,
    complete_source,
)
from pullctl.cli.output import OutputFormat, TableOrJson

if TYPE_CHECKING:
    from pullctl.dapr import DaprClient
    from pullctl.pipeline.store import Store
    from pullctl.schedulers.dapr_jobs import JobsPlan
    from pullctl.settings import Settings

T = TypeVar("T")

app = typer.Typer(
    help="DAPR Jobs: one job pull-<source_id> per scheduled_pull source, called back on `pullctl serve`.\n\n"
    "The sidecar is DAPR_HTTP_ENDPOINT / DAPR_HTTP_PORT (default http://127.0.0.1:3500); DAPR delivers a job"
    " only to the app-id that registered it, so talk to the sidecar of `pullctl serve`.",
    no_args_is_help=True,
)


def _with_dapr(settings: Settings, call: Callable[[DaprClient, Store], Awaitable[T]]) -> T:
    """Open the store and a DAPR client, make one library call, close both."""
    from pullctl.dapr import DaprClient
    from pullctl.pipeline.store import open_store

    async def go() -> T:
        async with (
            open_store(settings) as store,
            DaprClient.from_settings(settings) as dapr,
        ):
            return await call(dapr, store)

    return asyncio.run(go())


@app.command("sync")
def sync(
    config: ConfigOption = None,
    store: StoreOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing")] = False,
    prune: Annotated[
        bool, typer.Option(help="Delete registered jobs whose source is gone, disabled or not scheduled_pull")
    ] = True,
    fmt: OutputOption = OutputFormat.text,
) -> None:
    """Register a job per enabled scheduled_pull source, re-register changed ones, delete orphans.

    Exit 0 when every job converged, 1 when any failed (the others are still done), 2 on config errors.

    Example: DAPR_HTTP_PORT=3500 pullctl jobs sync --dry-run
    """
    from pullctl.pipeline.config_store import open_config_source
    from pullctl.schedulers.dapr_jobs import sync_jobs
    from pullctl.settings import Settings

    settings = Settings.from_env(config=config, store=store)
    # any config error raises: a source missing because it is invalid must not have its job pruned
    sources = open_config_source(settings.config, settings.mongodb_database).scheduled("dapr")
    for note in sources.notes():
        output.stderr.print(note, markup=False)
    plan = _with_dapr(
        settings, lambda dapr, backend: sync_jobs(dapr, backend, sources, dry_run=dry_run, prune=prune)
    )
    if fmt is OutputFormat.json:
        output.print_json(plan.to_dict())
    else:
        for entry in plan.entries:
            note = "  (not pruned: --no-prune)" if entry.action == "keep" else ""
            schedule = f"  {entry.schedule}" if entry.schedule else ""
            typer.echo(f"{entry.action:<10} job/{entry.name}{schedule}{note}")
    _print_outcome(plan)
    if plan.failed:
        raise typer.Exit(1)


def _print_outcome(plan: JobsPlan) -> None:
    for entry in plan.failed:
        output.error(f"job/{entry.name}: {entry.error}")
    c = plan.counts(done_only=True)
    where = f"DAPR sidecar {plan.endpoint}"
    if plan.dry_run:
        summary = (
            f"dry run, nothing sent to {where}: {c['register']} to register, {c['update']} to update,"
            f" {c['unchanged']} unchanged, {c['delete']} to delete"
        )
    else:
        summary = (
            f"{where}: {c['register']} registered, {c['update']} updated, {c['unchanged']} unchanged,"
            f" {c['delete']} deleted"
        )
    output.plan_outcome(
        summary, keep=c["keep"], failed=len(plan.failed), total=len(plan.entries), seconds=plan.seconds
    )


JOBS_COLUMNS = (
    output.Column("JOB", whole=True),
    output.Column("SOURCE", whole=True),
    output.Column("SCHEDULE", drop=2),
    output.Column("STATUS"),
    output.Column("CONFIG HASH", drop=1),
    output.Column("REGISTERED (UTC)", drop=3),
)


@app.command("list")
def list_jobs(store: StoreOption = None, fmt: TableOutputOption = TableOrJson.table) -> None:
    """List the registered jobs with what the sidecar holds for each (active, missing, error).

    Example: pullctl jobs list --output json | jq '.[] | select(.status != "active")'
    """
    from pullctl.schedulers.dapr_jobs import list_jobs as list_registered
    from pullctl.settings import Settings

    jobs = _with_dapr(Settings.from_env(store=store), list_registered)
    rows: list[dict[str, Any]] = [j.to_dict() for j in jobs]
    if fmt is TableOrJson.json:
        output.print_json(rows)
        return
    table = [
        [
            r["name"],
            r["source_id"],
            r["schedule"] or "-",
            r["status"],
            r["config_hash"][:12],
            j.registered_at.strftime("%Y-%m-%d %H:%M:%S")
            if isinstance(j.registered_at, datetime)
            else str(j.registered_at),
        ]
        for j, r in zip(jobs, rows, strict=True)
    ]
    output.print_table(JOBS_COLUMNS, table)
    for job in jobs:
        if job.error:
            output.warning(f"job/{job.name}: {job.error}")
        elif job.job is None:
            output.warning(
                f"job/{job.name} is in the registry but not in the sidecar: run 'pullctl jobs sync'"
            )


@app.command("delete")
def delete(
    source: Annotated[
        str,
        typer.Argument(
            help="The source_id whose job pull-<source_id> to delete", autocompletion=complete_source
        ),
    ],
    store: StoreOption = None,
) -> None:
    """Delete one source's job from the sidecar and the registry (`jobs sync` registers it again if the
    source is still there and enabled).

    Example: pullctl jobs delete weather-api
    """
    from pullctl.schedulers.dapr_jobs import delete_source_job, job_name
    from pullctl.settings import Settings

    known = _with_dapr(
        Settings.from_env(store=store), lambda dapr, backend: delete_source_job(dapr, backend, source)
    )
    note = "" if known else "  (it was not in the registry)"
    typer.echo(f"deleted    job/{job_name(source)}{note}")

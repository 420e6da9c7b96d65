"""`pullctl run` and `pullctl runs`: one pull (or a backfill) and the run history."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Any

import typer

from pullctl.cli import output, progress
from pullctl.cli.options import (
    ConfigOption,
    OutputOption,
    SourceArgument,
    StoreOption,
    TableOutputOption,
    complete_source,
)
from pullctl.cli.output import OutputFormat, TableOrJson


def run(
    source: SourceArgument,
    config: ConfigOption = None,
    store: StoreOption = None,
    from_: Annotated[
        str | None, typer.Option("--from", help="Backfill start (ISO date/time, inclusive)")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", metavar="WHEN", help="Backfill end (ISO date/time, exclusive)")
    ] = None,
    step: Annotated[str | None, typer.Option(help="Backfill window length, e.g. 1d, 6h")] = None,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Only items whose FIELD=VALUE (repeatable)")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a request parameter PARAM=VALUE")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Fetch and print documents as JSON lines; store nothing")
    ] = False,
    allow_jobs: Annotated[
        bool,
        typer.Option(
            "--allow-jobs",
            help="With --dry-run: create report jobs (job:) too; by default a dry run creates none, since a"
            " report can cost money or quota",
        ),
    ] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N items (a preview)")] = None,
    out: OutputOption = OutputFormat.text,
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=256, help="Override iteration.concurrency")
    ] = None,
    shard: Annotated[str | None, typer.Option(help="Take shard I of N of the items, e.g. 0/4")] = None,
    replay: Annotated[str | None, typer.Option(help="Re-run only the failed items of this run id")] = None,
    advance_state: Annotated[
        bool, typer.Option("--advance-state", help="A backfill moves the incremental state too")
    ] = False,
) -> None:
    """Run one pull now: fetch every item, store new documents, print a summary. Exit 0/1 failed/3 partial.

    Example: pullctl run weather-api --from 2026-01-01 --to 2026-01-04 --step 1d
    """
    from pullctl.cli import flags
    from pullctl.run.runner import RunOptions
    from pullctl.run.service import exit_code, run_pulls, shutdown_sidecar
    from pullctl.settings import Settings

    settings = Settings.from_env(config=config, store=store)
    _check_flags(
        from_, to, step, allow_jobs=allow_jobs, dry_run=dry_run, replay=replay, advance=advance_state
    )
    options = RunOptions(
        trigger=settings.trigger,
        shard=flags.shard(shard),
        only=flags.assignments(only, "--only") or None,
        overrides=flags.overrides(set_) or None,
        limit=limit,
        concurrency=concurrency,
        dry_run=dry_run,
        allow_jobs=allow_jobs,
    )
    interactive = settings.log_format == "text" or (settings.log_format == "auto" and sys.stderr.isatty())
    observer_for = progress.observers(source, interactive)
    backfill = flags.backfill(from_, to, step)

    async def pull() -> list[Any]:
        try:
            return await run_pulls(
                settings,
                source,
                options,
                backfill=backfill,
                replay=replay,
                observer_for=observer_for,
                advance_state=advance_state,
            )
        finally:
            warning = await shutdown_sidecar(settings)
            if warning:
                output.warning(warning, event="sidecar_not_stopped")

    records = asyncio.run(pull())
    if not records and replay:
        output.note(f"run {replay} has no failed items: nothing to replay", event="nothing_to_replay")
    elif not records:  # window.since: last_success, and the last succeeded window reaches the tick
        output.note(f"{source} is up to date: nothing to fetch yet", event="up_to_date")
    for record in records:
        if out is OutputFormat.json:  # after a dry run's documents: the last line is the record
            output.print_json_line(record.to_dict())
        elif interactive:
            progress.print_summary(record)
    if len(records) > 1:
        output.note(progress.backfill_summary(records), event="backfill_finished")
    raise typer.Exit(exit_code(records))


def _check_flags(
    from_: str | None,
    to: str | None,
    step: str | None,
    *,
    allow_jobs: bool,
    dry_run: bool,
    replay: str | None,
    advance: bool,
) -> None:
    """The flags of ``run`` that only make sense together (or apart)."""
    from pullctl.errors import UsageError

    if (from_ is None) != (to is None):
        raise UsageError("--from and --to go together (a backfill of [from, to))")
    if step and from_ is None:
        raise UsageError("--step needs --from and --to")
    if allow_jobs and not dry_run:
        raise UsageError("--allow-jobs goes with --dry-run (a run creates its report jobs anyway)")
    if replay and from_:
        raise UsageError("--replay runs the replayed run's window; it cannot be combined with --from/--to")
    if replay and dry_run:
        raise UsageError("--replay reads the run from the store; it cannot be combined with --dry-run")
    if advance and not from_:
        raise UsageError("--advance-state applies to a backfill (--from/--to); a scheduled run always does")


RUNS_COLUMNS = (
    output.Column("RUN", whole=True),
    output.Column("SOURCE", whole=True),
    output.Column("TRIGGER", drop=3),
    output.Column("STATUS"),
    output.Column("STARTED (UTC)", drop=5),
    output.Column("SECONDS", drop=2),
    output.Column("ITEMS", drop=4),
    output.Column("FAILED"),
    output.Column("STORED", drop=6),
    output.Column("DUP", drop=1),
    output.Column("STATE", drop=7),
)


def runs(
    source: Annotated[
        str | None, typer.Argument(help="Only runs of this source", autocompletion=complete_source)
    ] = None,
    store: StoreOption = None,
    limit: Annotated[int, typer.Option(min=1, help="How many runs, newest first")] = 20,
    out: TableOutputOption = TableOrJson.table,
) -> None:
    """Show run history from the store, newest first.

    Example: pullctl runs weather-api --limit 5 --output json
    """
    from pullctl.pipeline.store import open_store
    from pullctl.settings import Settings

    settings = Settings.from_env(store=store)

    from pullctl.run.incremental import describe_summary, summaries

    async def fetch() -> tuple[list[Any], dict[str, Any]]:
        async with open_store(settings, read_only=True) as backend:
            return await backend.list_runs(source, limit), await summaries(backend)

    records, states = asyncio.run(fetch())
    if out is TableOrJson.json:  # each run with its source's state now (incremental, SOURCES §7)
        output.print_json([{**r.to_dict(), "source_state": states.get(r.source_id)} for r in records])
        return
    rows = [
        [
            r.run_id,
            r.source_id,
            r.trigger,
            r.status,
            r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            f"{r.duration_seconds:.1f}" if r.duration_seconds is not None else "-",
            str(r.counts["items"]),
            str(r.counts["failed"]),
            str(r.counts["stored"]),
            str(r.counts["duplicates"]),
            describe_summary(states.get(r.source_id)),
        ]
        for r in records
    ]
    output.print_table(RUNS_COLUMNS, rows)

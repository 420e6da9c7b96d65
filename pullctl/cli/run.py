"""`pullctl run` and `pullctl runs`: one pull (or a backfill) and the run history."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Any

import typer

from pullctl.cli import output
from pullctl.cli.options import ConfigOption, OutputOption, StoreOption, TableOutputOption
from pullctl.cli.output import OutputFormat, TableOrJson


class _ProgressObserver:
    """A rich progress bar on stderr: items done/failed, documents stored/duplicate, requests/s."""

    def __init__(self, label: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=output.stderr,
            transient=False,
        )
        self.label = label
        self.task: Any = None
        self._t0 = 0.0

    def _detail(self, record: Any) -> str:
        import time

        c = record.counts
        rate = c["requests"] / max(time.monotonic() - self._t0, 1e-6)
        failed = f"[red]{c['failed']} failed[/] · " if c["failed"] else ""
        return f"{failed}{c['stored']} stored · {c['duplicates']} dup · {rate:.0f} req/s"

    def started(self, record: Any, plan: Any) -> None:
        import time

        self._t0 = time.monotonic()
        self.progress.start()
        total = None if plan.streaming else len(plan.tasks)  # a parent's records: no total up front
        self.task = self.progress.add_task(self.label, total=total, detail="")

    def item_done(self, record: Any, key: str, error: str | None, attempts: int = 0) -> None:
        if error is not None:
            self.progress.console.print(f"[red]✗[/] {key}: ", end="")
            self.progress.console.print(error, markup=False)
        self.progress.update(self.task, advance=1, detail=self._detail(record))

    def stored(self, record: Any) -> None:
        if self.task is not None:
            self.progress.update(self.task, detail=self._detail(record))

    def dry_run_document(self, document: dict[str, Any]) -> None:
        output.print_json_line(document)

    def finished(self, record: Any) -> None:
        if self.task is not None:
            self.progress.update(self.task, detail=self._detail(record))
            self.progress.stop()


def _summary(record: Any) -> None:
    from rich.table import Table

    colour = {"succeeded": "green", "partial": "yellow"}.get(record.status, "red")
    c = record.counts
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_row("run", f"{record.run_id} ([{colour}]{record.status}[/])")
    table.add_row("window", f"{record.window['start']} → {record.window['end']}")
    table.add_row(
        "items", f"{c['items']} · fetched {c['fetched']} · failed {c['failed']} · skipped {c['skipped']}"
    )
    table.add_row("documents", f"{c['stored']} stored · {c['duplicates']} duplicates · {c['pages']} pages")
    table.add_row(
        "requests",
        f"{c['requests']} · {c['retries']} retries"
        + (f" · {c['parent_requests']} to parents" if c.get("parent_requests") else "")
        + f" · {record.duration_seconds or 0:.2f} s",
    )
    if record.events["sent"] or record.events["pending"]:
        table.add_row("events", f"{record.events['sent']} sent · {record.events['pending']} pending")
    output.stderr.print(table)
    for err in record.errors[:20]:
        output.stderr.print(f"  [red]•[/] {err.item or 'run'}: ", end="")
        output.stderr.print(err.message, markup=False)
    if len(record.errors) > 20:
        output.stderr.print(
            f"  … and {len(record.errors) - 20} more (pullctl runs {record.source_id} --output json)"
        )


def run(
    source: Annotated[str, typer.Argument(help="The source_id to run")],
    config: ConfigOption = None,
    store: StoreOption = None,
    from_: Annotated[
        str | None, typer.Option("--from", help="Backfill start (ISO date/time, inclusive)")
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="Backfill end (ISO date/time, exclusive)")] = None,
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
    from pullctl.errors import UsageError
    from pullctl.run.plan import Shard, parse_assignments
    from pullctl.run.runner import RunOptions
    from pullctl.run.service import Backfill, exit_code, run_pulls, shutdown_sidecar
    from pullctl.settings import Settings

    settings = Settings.from_env(config=config, store=store)
    if (from_ is None) != (to is None):
        raise UsageError("--from and --to go together (a backfill of [from, to))")
    if step and from_ is None:
        raise UsageError("--step needs --from and --to")
    if replay and from_:
        raise UsageError("--replay runs the replayed run's window; it cannot be combined with --from/--to")
    if advance_state and not from_:
        raise UsageError("--advance-state applies to a backfill (--from/--to); a scheduled run always does")
    overrides = {k: v[-1] for k, v in parse_assignments(set_ or [], "--set").items()}
    options = RunOptions(
        trigger=settings.trigger,
        shard=Shard.parse(shard) if shard else None,
        only=parse_assignments(only or [], "--only") or None,
        overrides=overrides or None,
        limit=limit,
        concurrency=concurrency,
        dry_run=dry_run,
    )
    log_format = settings.log_format
    interactive = log_format == "text" or (log_format == "auto" and sys.stderr.isatty())

    def observer_for(window: Any) -> Any:
        from pullctl.run.report import JsonLogObserver

        if interactive:
            return _ProgressObserver(source if window is None else f"{source} {window.start:%Y-%m-%d %H:%M}")
        return JsonLogObserver()

    backfill = Backfill(from_, to, step) if from_ and to else None
    try:
        records = asyncio.run(
            run_pulls(
                settings,
                source,
                options,
                backfill=backfill,
                replay=replay,
                observer_for=observer_for,
                advance_state=advance_state,
            )
        )
    finally:
        warning = asyncio.run(shutdown_sidecar(settings))
        if warning:
            output.warning(warning, event="sidecar_not_stopped")
    if not records and replay:
        output.note(f"run {replay} has no failed items: nothing to replay", event="nothing_to_replay")
    elif not records:  # window.since: last_success, and the last succeeded window reaches the tick
        output.note(f"{source} is up to date: nothing to fetch yet", event="up_to_date")
    for record in records:
        if out is OutputFormat.json and not dry_run:  # a dry run's stdout carries the documents only
            output.print_json_line(record.to_dict())
        elif interactive:
            _summary(record)
    raise typer.Exit(exit_code(records))


def runs(
    source: Annotated[str | None, typer.Argument(help="Only runs of this source")] = None,
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
        async with open_store(settings) as backend:
            return await backend.list_runs(source, limit), await summaries(backend)

    records, states = asyncio.run(fetch())
    if out is TableOrJson.json:  # each run with its source's state now (incremental, SOURCES §7)
        output.print_json([{**r.to_dict(), "source_state": states.get(r.source_id)} for r in records])
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in (
        "RUN",
        "SOURCE",
        "TRIGGER",
        "STATUS",
        "STARTED (UTC)",
        "SECONDS",
        "ITEMS",
        "FAILED",
        "STORED",
        "DUP",
        "STATE",
    ):
        table.add_column(col)
    for r in records:
        c = r.counts
        table.add_row(
            r.run_id,
            r.source_id,
            r.trigger,
            r.status,
            r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            f"{r.duration_seconds:.1f}" if r.duration_seconds is not None else "-",
            str(c["items"]),
            str(c["failed"]),
            str(c["stored"]),
            str(c["duplicates"]),
            describe_summary(states.get(r.source_id)),
        )
    output.stdout.print(table)

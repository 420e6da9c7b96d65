"""`pullctl status`: every source on one screen (stale, failing, pending); `--fail-on` makes it a check."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from pullctl.cli import output
from pullctl.cli.options import ConfigOption, StoreOption, TableOutputOption
from pullctl.cli.output import Column, TableOrJson

if TYPE_CHECKING:
    from pullctl.pipeline.status import SourceStatus

COLUMNS = (
    Column("SOURCE", whole=True),
    Column("ENABLED", drop=3),
    Column("SCHEDULE", drop=4),
    Column("LAST RUN", whole=True),
    Column("STATUS"),
    Column("LAST SUCCESS (UTC)", drop=5),
    Column("BEHIND"),
    Column("FAILED"),
    Column("PENDING", drop=6),
    Column("STATE LAG", drop=1),
    Column("NEXT RUN (UTC)", drop=2),
)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else "-"


def _row(s: SourceStatus) -> list[str]:
    from pullctl.pipeline.state import format_behind
    from pullctl.pipeline.status import behind_text

    if s.intervals_behind is not None:
        behind = behind_text(s.intervals_behind)
    else:
        behind = "never" if s.scheduled else "-"
    success = s.last_success
    return [
        s.source_id,
        "yes" if s.enabled else "no",
        s.schedule or "-",
        s.last_run.run_id if s.last_run else "-",
        s.last_run.status if s.last_run else "never run",
        _when(success.finished_at or success.started_at) if success else "-",
        behind,
        str(s.failed_items),
        str(s.pending_events),
        format_behind(s.state_lag_seconds),
        _when(s.next_run),
    ]


def status(
    config: ConfigOption = None,
    store: StoreOption = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            metavar="RULES",
            help="Exit 1 when a source breaks a rule: stale=N (more than N schedule intervals since its last"
            " success), failed, partial (its last run ended so); comma-separated",
            show_default=False,
        ),
    ] = None,
    out: TableOutputOption = TableOrJson.table,
) -> None:
    """Every source: enabled, schedule, last run, last success and how many intervals behind, failed items
    to replay, pending events, next run. With --fail-on, exit 1 (and say why on stderr) when one is unwell.

    Example: pullctl status --fail-on stale=2,failed
    """
    from pullctl.cli import flags
    from pullctl.pipeline.config_store import open_config_source
    from pullctl.pipeline.status import source_status
    from pullctl.pipeline.store import open_store
    from pullctl.settings import Settings

    settings = Settings.from_env(config=config, store=store)
    rules = flags.fail_on(fail_on)
    result = open_config_source(settings.config, settings.mongodb_database).all("dapr", require=True)
    result.raise_for_errors()

    async def read() -> list[SourceStatus]:
        async with open_store(settings, read_only=True) as backend:
            return await source_status(result.sources, backend, datetime.now(UTC))

    rows = asyncio.run(read())
    if out is TableOrJson.json:
        output.print_json([{**r.to_dict(), "problems": r.problems(rules)} for r in rows])
    else:
        output.print_table(COLUMNS, [_row(r) for r in rows])
    problems = [(r.source_id, p) for r in rows for p in r.problems(rules)]
    for source_id, problem in problems:
        output.error(f"{source_id}: {problem}", event="source_unwell", source_id=source_id)
    if problems:
        raise typer.Exit(1)

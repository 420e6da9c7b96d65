"""`pullctl list` and `pullctl schema`: what sources there are, and the schema editors check them with."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer

from pullctl.cli import output
from pullctl.cli.options import ConfigOption, StoreOption, TableOutputOption
from pullctl.cli.output import TableOrJson


def list_sources(
    config: ConfigOption = None, out: TableOutputOption = TableOrJson.table, store: StoreOption = None
) -> None:
    """List the sources with mode, schedule, next runs, iteration, auth and state (how far behind).

    Example: pullctl list --output json | jq '.[].source_id'
    """
    from pullctl.config.catalog import source_summary
    from pullctl.pipeline.config_store import open_config_source
    from pullctl.run.incremental import describe_summary, source_states
    from pullctl.settings import Settings

    settings = Settings.from_env(config=config, store=store)
    result = open_config_source(settings.config, settings.mongodb_database).all("dapr", require=True)
    result.raise_for_errors()
    now = datetime.now(UTC)
    states = asyncio.run(source_states(settings, [s.config for s in result.sources], now))
    rows = [{**source_summary(s, now), "state": states.get(s.source_id)} for s in result.sources]
    if out is TableOrJson.json:
        output.print_json(rows)
        return
    table = []
    for r in rows:
        nxt = r["next_runs"][0][:16].replace("T", " ") if r["next_runs"] else "-"
        mode = r["mode"].replace("scheduled_pull", "pull")
        enabled = "yes" if r["enabled"] else "no"
        table.append(
            [
                r["source_id"],
                mode,
                r["schedule"] or "-",
                r["timezone"],
                nxt,
                r["iteration"],
                r["auth_type"] or "-",
                enabled,
                describe_summary(r["state"]),
            ]
        )
    output.print_table(LIST_COLUMNS, table)


LIST_COLUMNS = (
    output.Column("SOURCE", whole=True),
    output.Column("MODE", drop=3),
    output.Column("SCHEDULE"),
    output.Column("TZ", drop=4),
    output.Column("NEXT RUN (UTC)", drop=5),
    output.Column("ITERATION", drop=1),
    output.Column("AUTH", drop=2),
    output.Column("ENABLED"),
    output.Column("STATE", drop=6),
)


def schema(
    fmt: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", metavar="json|markdown", help="json (JSON Schema) or markdown (the reference)"
        ),
    ] = None,
    old_fmt: Annotated[str | None, typer.Option("--format", "-f", hidden=True)] = None,
) -> None:
    """Print the JSON Schema of a source config, for editors (yaml-language-server) and CI.

    Example: pullctl schema > config/source-config.schema.json
    """
    option = "--format" if fmt is None and old_fmt is not None else "--output"  # --format: the old spelling
    fmt = fmt or old_fmt or "json"
    if fmt == "markdown":
        from pullctl.config.reference import render_reference

        typer.echo(render_reference(), nl=False)
        return
    if fmt != "json":
        from pullctl.errors import UsageError

        raise UsageError(f"{option} '{fmt}': use json or markdown")
    from pullctl.config.models import json_schema

    output.print_json(json_schema())

"""`pullctl list` and `pullctl schema`: what sources there are, and the schema editors check them with."""

from __future__ import annotations

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
    result = open_config_source(settings.config, settings.mongodb_database).all("dapr")
    result.raise_for_errors()
    now = datetime.now(UTC)
    states = source_states(settings, [s.config for s in result.sources], now)
    rows = [{**source_summary(s, now), "state": states.get(s.source_id)} for s in result.sources]
    if out is TableOrJson.json:
        output.print_json(rows)
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in (
        "SOURCE",
        "MODE",
        "SCHEDULE",
        "TZ",
        "NEXT RUN (UTC)",
        "ITERATION",
        "AUTH",
        "ENABLED",
        "STATE",
    ):
        table.add_column(col, overflow="fold")
    for r in rows:
        nxt = r["next_runs"][0][:16].replace("T", " ") if r["next_runs"] else "-"
        table.add_row(
            r["source_id"],
            r["mode"].replace("scheduled_pull", "pull"),
            r["schedule"] or "-",
            r["timezone"],
            nxt,
            r["iteration"],
            r["auth_type"] or "-",
            "yes" if r["enabled"] else "no",
            describe_summary(r["state"]),
        )
    output.stdout.print(table)


def schema(
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="json (JSON Schema) or markdown (the reference)")
    ] = "json",
) -> None:
    """Print the JSON Schema of a source config, for editors (yaml-language-server) and CI.

    Example: pullctl schema > config/source-config.schema.json
    """
    if fmt == "markdown":
        from pullctl.config.reference import render_reference

        typer.echo(render_reference(), nl=False)
        return
    if fmt != "json":
        from pullctl.errors import UsageError

        raise UsageError(f"--format '{fmt}': use json or markdown")
    from pullctl.config.models import json_schema

    output.print_json(json_schema())

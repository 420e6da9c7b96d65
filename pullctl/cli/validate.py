"""`pullctl validate`: check source configs (files, folders, the MongoDB config store), located, for CI."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from pullctl.cli import output
from pullctl.cli.options import ConfigOption
from pullctl.errors import Issue


class Format(StrEnum):
    text = "text"
    json = "json"
    github = "github"


class TargetChoice(StrEnum):
    k8s = "k8s"
    dapr = "dapr"


def _github(issue: Issue) -> str:
    kind = "error" if issue.severity == "error" else "warning"
    title = issue.path or "config"
    message = issue.message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return f"::{kind} file={issue.file},line={issue.line},col={issue.column},title={title}::{message}"


def validate(
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            help="Files or folders of YAML configs, or mongodb://… [env: PULLCTL_CONFIG;"
            " default: config/source-configs]"
        ),
    ] = None,
    strict: Annotated[bool, typer.Option(help="Unknown top-level sections are errors, not warnings")] = False,
    target: Annotated[
        TargetChoice, typer.Option(help="Schedule dialect: k8s CronJobs or dapr Jobs")
    ] = TargetChoice.k8s,
    fmt: Annotated[
        Format | None,
        typer.Option("--output", "-o", help="text, json, or github annotations [default: text]"),
    ] = None,
    config: ConfigOption = None,
    old_fmt: Annotated[Format | None, typer.Option("--format", "-f", hidden=True)] = None,
) -> None:
    """Check source configs; print every problem as file:line:col: field: message. Exit 0 clean, 2 on errors.

    Example: pullctl validate config/source-configs --strict --output github

    Example: PULLCTL_CONFIG=mongodb://localhost:27017 pullctl validate
    """
    from pullctl.pipeline.config_store import open_config_source
    from pullctl.settings import Settings

    fmt = fmt or old_fmt or Format.text  # --format: the old spelling, kept
    settings = Settings.from_env(config=config)
    configs = open_config_source(paths or [settings.config], settings.mongodb_database)
    result = configs.all(target.value, strict=strict, require=True)
    if fmt is Format.json:
        output.print_json(
            {
                "valid": not result.errors,
                "files": result.files,
                "sources": [s.source_id for s in result.sources],
                "errors": [vars(i) for i in result.errors],
                "warnings": [vars(i) for i in result.warnings],
            }
        )
    else:
        for issue in result.issues:
            if fmt is Format.github:
                typer.echo(_github(issue))
            else:
                typer.echo(f"{issue}" if issue.severity == "error" else f"{issue} (warning)")
    summary = f"{output.plural(result.files, 'file')}: {output.plural(len(result.sources), 'source')}"
    summary += (
        f", {output.plural(len(result.errors), 'error')}, {output.plural(len(result.warnings), 'warning')}"
    )
    if result.errors:
        output.stderr.print(f"[red]✗[/] {summary}")
        raise typer.Exit(2)
    output.stderr.print(f"[green]✓[/] {summary}")

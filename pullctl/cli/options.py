"""Options shared by several commands, defined once so their help never drifts."""

from __future__ import annotations

from typing import Annotated

import typer

from pullctl.cli.output import Output

ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        help="Folder or file of source configs, or mongodb://…"
        " [env: PULLCTL_CONFIG; default: config/source-configs]",
        show_default=False,
    ),
]
StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="sqlite:///path or mongodb://… [env: PULLCTL_STORE; default: sqlite:///.pullctl/pullctl.db]",
        show_default=False,
    ),
]
OUTPUT_HELP = "text or table for people (the same), json for programs"
OutputOption = Annotated[Output, typer.Option("--output", "-o", help=OUTPUT_HELP)]
TableOutputOption = OutputOption  # one option, one name, one set of values across commands


def complete_source(incomplete: str) -> list[str]:
    """Shell completion: the source ids where ``PULLCTL_CONFIG`` points that start with ``incomplete``."""
    from pullctl.errors import PullctlError
    from pullctl.pipeline.config_store import open_config_source
    from pullctl.settings import Settings

    settings = Settings.from_env()
    try:
        sources = open_config_source(settings.config, settings.mongodb_database).all("dapr").sources
    except PullctlError:
        return []
    return [s.source_id for s in sources if s.source_id.startswith(incomplete)]


SourceArgument = Annotated[
    str, typer.Argument(help="The source_id", metavar="SOURCE", autocompletion=complete_source)
]

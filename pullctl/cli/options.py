"""Options shared by several commands, defined once so their help never drifts."""

from __future__ import annotations

from typing import Annotated

import typer

from pullctl.cli.output import OutputFormat, TableOrJson

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
OutputOption = Annotated[
    OutputFormat, typer.Option("--output", "-o", help="text for people, json for programs")
]
TableOutputOption = Annotated[
    TableOrJson, typer.Option("--output", "-o", help="table for people, json for programs")
]

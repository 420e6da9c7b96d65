"""`pullctl demo`: the whole flow offline on loopback (the library is ``pullctl.demo``)."""

from __future__ import annotations

from typing import Annotated

import typer

from pullctl.cli import output


def demo(
    keep: Annotated[
        bool, typer.Option("--keep", help="Leave the demo servers up afterwards, until Ctrl-C")
    ] = False,
    directory: Annotated[
        str,
        typer.Option(
            "--dir",
            metavar="DIR",
            help="Folder for the demo's source config and SQLite store (its store is wiped)",
        ),
    ] = ".pullctl/demo",
) -> None:
    """Run a pull end to end offline: a demo weather API and MCP server on loopback, a fresh SQLite store,
    two runs (the second finds only duplicates), three stored documents. Exit like `run`; 130 on Ctrl-C.

    Example: pullctl demo --dir /tmp/pullctl-demo
    """
    from pullctl.cli.progress import ProgressObserver, print_summary
    from pullctl.demo import run_demo
    from pullctl.run.service import exit_code

    try:
        result = run_demo(
            directory,
            keep=keep,
            out=output.stdout,
            err=output.stderr,
            observer_for=ProgressObserver,
            summary=print_summary,
        )
    except KeyboardInterrupt:
        output.stderr.print("\ninterrupted: the demo servers are stopped")
        raise typer.Exit(130) from None
    raise typer.Exit(exit_code(result.records))

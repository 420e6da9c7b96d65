"""The `pullctl` command: a thin Typer layer over the library.

Every `PullctlError` is caught here, in one place, printed as ``error: <message>`` on stderr (with
``PULLCTL_LOG_FORMAT=json`` a JSON line, ``"event": "fatal_error"``, like every other stderr line), and turned
into the contract's exit code (DESIGN §3). Anything else is a bug and keeps its traceback (in json mode,
inside a JSON line).
"""

from __future__ import annotations

import logging
from typing import Any

import typer
from typer.core import TyperGroup

from pullctl import __version__
from pullctl.cli import configs, jobs, k8s, output, run, serve, sources, state, validate
from pullctl.cli.demo import demo
from pullctl.errors import PullctlError
from pullctl.settings import Settings


class _PullctlGroup(TyperGroup):
    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            output.use_log_format(Settings.from_env().log_format)
            return super().invoke(ctx)
        except PullctlError as exc:
            output.error(exc.message, event="fatal_error", exit_code=exc.exit_code)
            ctx.exit(exc.exit_code)
        except (typer.Exit, typer.Abort, typer.exceptions.TyperException):  # Typer's own control flow
            raise
        except Exception:
            if not output.json_lines():
                raise
            # A bug: its traceback, as one JSON line (a log collector keeps it in one piece).
            logging.getLogger("pullctl").exception("unexpected error (a bug)", extra={"event": "crash"})
            ctx.exit(1)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pullctl {__version__}")
        raise typer.Exit()


app = typer.Typer(
    cls=_PullctlGroup,
    name="pullctl",
    help=(
        "Scheduled pull ingestion from HTTP/REST JSON APIs: a new source is a YAML file, never code.\n\n"
        "Example: pullctl validate config/source-configs && pullctl run weather-api --dry-run --limit 2"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """pullctl."""


app.command("validate")(validate.validate)
app.command("list")(sources.list_sources)
app.command("schema")(sources.schema)
app.command("run")(run.run)
app.command("runs")(run.runs)
app.command("render")(k8s.render)
app.command("sync")(k8s.sync)
app.command("demo")(demo)
app.add_typer(configs.app, name="config")
app.add_typer(jobs.app, name="jobs")
app.add_typer(state.app, name="state")
app.command("serve")(serve.serve)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

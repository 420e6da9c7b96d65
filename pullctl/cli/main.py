"""The `pullctl` command: a thin Typer layer over the library.

Every `PullctlError` is caught here, in one place, printed as ``error: <message>`` on stderr (with
``PULLCTL_LOG_FORMAT=json`` a JSON line, ``"event": "fatal_error"``, like every other stderr line), and turned
into the contract's exit code (DESIGN §3). Anything else is a bug and keeps its traceback (in json mode,
inside a JSON line).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import typer
from typer._click.exceptions import UsageError  # Typer's own click (0.29 vendors it): what it raises
from typer.core import TyperGroup

from pullctl import __version__
from pullctl.cli import configs, jobs, k8s, output, run, serve, sources, state, status, validate
from pullctl.cli.demo import demo
from pullctl.errors import OptionsError, PullctlError
from pullctl.settings import Settings

# Metavars people read in --help (Typer would show Python types: <str>, <list[str]>, <int range>)
METAVARS = {
    "source": "SOURCE",
    "paths": "PATH...",
    "config": "PATH|URL",
    "store": "URL",
    "to": "URL",
    "from_": "WHEN",
    "only": "FIELD=VALUE",
    "set_": "PARAM=VALUE",
    "step": "DURATION",
    "limit": "N",
    "concurrency": "N",
    "shard": "I/N",
    "replay": "RUN_ID",
}


def _plain_metavars(command: Any) -> None:
    """Every parameter of ``command`` and its subcommands gets a metavar without a Python type in it."""
    for param in command.params:
        descriptor = getattr(param, "type_descriptor", None)
        if getattr(param, "is_flag", False) or (descriptor is not None and descriptor.is_choice):
            continue  # a flag has none; <text|json> says it best
        if param.metavar is None:
            name = param.name or ""
            param.metavar = METAVARS.get(name, name.upper().rstrip("_").replace("_", "-"))
        if getattr(param, "param_type_name", "") == "argument":  # "SOURCE", not "SOURCE <str>"
            param.display_type_rich = lambda ctx: None
    for sub in getattr(command, "commands", {}).values():
        _plain_metavars(sub)


def _usage_error(exc: UsageError) -> NoReturn:
    """A usage error in the one style of every other error: ``error: …`` on one line, exit 2."""
    where = exc.ctx.command_path if exc.ctx is not None else "pullctl"
    message = exc.format_message().rstrip(".")
    output.error(f"{message} (see: {where} --help)", event="usage_error", exit_code=2)
    raise typer.Exit(2)


SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")


def _completion(action: str) -> Any:
    """``--show-completion [SHELL]`` / ``--install-completion [SHELL]``: for SHELL, else the shell this runs
    in. (Typer's own options take no SHELL whenever they can detect one.)"""

    def callback(ctx: typer.Context, param: Any, value: str | None) -> None:
        if value is None or ctx.resilient_parsing:
            return
        if value != DETECT and value not in SHELLS:
            raise UsageError(f"--{action}-completion '{value}': use one of {', '.join(SHELLS)}", ctx)
        from typer.completion import install_callback, show_callback

        callback = show_callback if action == "show" else install_callback
        callback(ctx, param, True if value == DETECT else value)

    return callback


def _shell_default(args: list[str]) -> list[str]:
    """``--show-completion`` without a SHELL: the shell this runs in (``detect``)."""
    out = []
    for i, arg in enumerate(args):
        out.append(arg)
        if arg in ("--show-completion", "--install-completion"):
            following = args[i + 1] if i + 1 < len(args) else None
            if following is None or following.startswith("-"):
                out.append(DETECT)
    return out


DETECT = "detect"


def _log_format_from_env() -> None:
    """``PULLCTL_LOG_FORMAT`` for this process's stderr lines; a bad value (any bad setting) is a one-line
    usage error, in text: the format it asked for is unknown."""
    output.use_log_format("auto")
    try:
        output.use_log_format(Settings.from_env().log_format)
    except PullctlError as exc:
        output.error(exc.message, event="fatal_error", exit_code=exc.exit_code)
        raise typer.Exit(exc.exit_code) from None


class _PullctlGroup(TyperGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_metavars(self)

    def main(self, args: Sequence[str] | None = None, *rest: Any, **kwargs: Any) -> Any:
        from typer.completion import completion_init

        completion_init()  # Typer's completion classes (what add_completion would register)
        return super().main(_shell_default(sys.argv[1:] if args is None else list(args)), *rest, **kwargs)

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        _log_format_from_env()
        try:
            return super().make_context(*args, **kwargs)
        except UsageError as exc:
            _usage_error(exc)

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except PullctlError as exc:
            output.error(_spelled(exc), event="fatal_error", exit_code=exc.exit_code)
            ctx.exit(exc.exit_code)
        except UsageError as exc:
            _usage_error(exc)
        except (typer.Exit, typer.Abort, typer.exceptions.TyperException):  # Typer's own control flow
            raise
        except Exception:
            if not output.json_lines():
                raise
            # A bug: its traceback, as one JSON line (a log collector keeps it in one piece).
            logging.getLogger("pullctl").exception("unexpected error (a bug)", extra={"event": "crash"})
            ctx.exit(1)


def _spelled(exc: PullctlError) -> str:
    """The error's message; a library's refusal of an option names the flag typed (``cli/flags.py``)."""
    if isinstance(exc, OptionsError):
        from pullctl.cli.flags import FLAGS

        return exc.spelled(FLAGS)
    return exc.message


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
    add_completion=False,  # the root's own --show-completion / --install-completion take a SHELL
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Print the version."
    ),
    install_completion: str | None = typer.Option(
        None,
        "--install-completion",
        metavar="[SHELL]",
        callback=_completion("install"),
        expose_value=False,
        is_eager=True,
        help="Install shell completion for SHELL (bash, zsh, fish, powershell; default: this shell).",
    ),
    show_completion: str | None = typer.Option(
        None,
        "--show-completion",
        metavar="[SHELL]",
        callback=_completion("show"),
        expose_value=False,
        is_eager=True,
        help="Print the completion script for SHELL (default: this shell), to install it yourself.",
    ),
) -> None:
    """pullctl."""


app.command("validate")(validate.validate)
app.command("list")(sources.list_sources)
app.command("schema")(sources.schema)
app.command("run")(run.run)
app.command("runs")(run.runs)
app.command("status")(status.status)
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

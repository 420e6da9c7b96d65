"""Where the CLI writes: data on stdout; progress, logs and errors on stderr. rich respects NO_COLOR."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Any

from rich.console import Console

from pullctl import logs

# Piped output keeps whole rows (a table is as wide as it needs, up to 240 columns), like kubectl.
stdout = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 240)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


class TableOrJson(StrEnum):
    table = "table"
    json = "json"


def print_json(data: Any) -> None:
    """One JSON document on stdout, unstyled, so pipes and ``jq`` get exactly the data."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def print_json_line(data: Any) -> None:
    sys.stdout.write(json.dumps(data, separators=(",", ":"), default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


_json_lines = False  # PULLCTL_LOG_FORMAT=json: errors, warnings and notes on stderr are JSON lines too


def use_log_format(log_format: str) -> None:
    """Set how stderr lines look for this process: ``json`` makes every one a JSON object (see ``logs``)."""
    global _json_lines
    _json_lines = log_format == "json"
    logs.configure(log_format)


def json_lines() -> bool:
    return _json_lines


def _json_line(level: str, event: str, message: str, fields: dict[str, Any]) -> None:
    logs.JsonLines()(level, event, message=message, **fields)


def error(message: str, event: str = "error", **fields: Any) -> None:
    """``error: message``; a JSON line with ``event`` and ``fields`` in json mode."""
    if _json_lines:
        return _json_line("error", event, message, fields)
    stderr.print("[bold red]error:[/] ", end="")
    stderr.print(message, markup=False)


def warning(message: str, event: str = "warning", **fields: Any) -> None:
    if _json_lines:
        return _json_line("warning", event, message, fields)
    stderr.print("[yellow]warning:[/] ", end="")
    stderr.print(message, markup=False)


def note(message: str, event: str = "note") -> None:
    """A plain line for people (``nothing to replay``); a JSON line with level info in json mode."""
    if _json_lines:
        return _json_line("info", event, message, {})
    stderr.print(message, markup=False)


def plan_outcome(summary: str, *, keep: int, failed: int, total: int, seconds: float) -> None:
    """The closing line of a sync-like command (``sync``, ``jobs sync``): ✓ or ✗, the counts, the time."""
    if keep:
        summary += f", {keep} kept (--no-prune)"
    if failed:
        stderr.print(f"[red]✗[/] {failed} of {total} failed; ", end="")
    else:
        stderr.print("[green]✓[/] ", end="")
    stderr.print(f"{summary} in {seconds:.1f} s", markup=False)


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"

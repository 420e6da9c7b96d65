"""Where the CLI writes: data on stdout; progress, logs and errors on stderr. rich respects NO_COLOR."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Any

from rich.console import Console

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


def error(message: str) -> None:
    stderr.print("[bold red]error:[/] ", end="")
    stderr.print(message, markup=False)


def warning(message: str) -> None:
    stderr.print("[yellow]warning:[/] ", end="")
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

"""Where the CLI writes: data on stdout; progress, logs and errors on stderr. rich respects NO_COLOR."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from rich.console import Console

from pullctl import logs

# Piped output keeps whole rows (a table is as wide as it needs, up to 240 columns), like kubectl.
PIPED_WIDTH = 240
stdout = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else PIPED_WIDTH)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class Output(StrEnum):
    """``--output`` of every command: ``text`` and ``table`` (the same, for people), ``json`` (programs)."""

    text = "text"
    table = "table"
    json = "json"


OutputFormat = TableOrJson = Output  # the names commands were written with


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


def terminal_width() -> int:
    """Columns a table may take: ``COLUMNS`` when set, else the terminal's, else ``PIPED_WIDTH`` (a pipe)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return PIPED_WIDTH


@dataclass(frozen=True)
class Column:
    """A table column. ``drop``: the order in which columns go on a narrow terminal (1 goes first; 0 never
    goes). ``whole``: an id that people copy (a source id, a run id): never truncated, never split."""

    header: str
    drop: int = 0
    whole: bool = False


GAP = "  "
ELLIPSIS = "…"


def fit(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int) -> list[str]:
    """The table's lines within ``width`` columns: droppable columns go first (lowest ``drop`` first), then
    text that is not ``whole`` is shortened with an ellipsis; a whole id is never cut, even if the line
    must then run over. One line per row: nothing wraps."""
    keep = list(range(len(columns)))

    def widths(indexes: list[int]) -> dict[int, int]:
        return {i: max([len(columns[i].header), *(len(r[i]) for r in rows)]) for i in indexes}

    def total(w: dict[int, int]) -> int:
        return sum(w.values()) + len(GAP) * (len(w) - 1)

    sized = widths(keep)
    for i in sorted((i for i in keep if columns[i].drop), key=lambda i: columns[i].drop):
        if total(sized) <= width:
            break
        keep.remove(i)
        sized = widths(keep)
    over = total(sized) - width
    for i in sorted((i for i in keep if not columns[i].whole), key=lambda i: -sized[i]):
        if over <= 0:
            break
        floor = max(len(columns[i].header), 3)
        cut = min(over, sized[i] - floor)
        if cut > 0:
            sized[i] -= cut
            over -= cut

    def cell(i: int, text: str) -> str:
        if len(text) > sized[i]:
            text = text[: sized[i] - 1] + ELLIPSIS
        return text.ljust(sized[i])

    def line(values: Sequence[str]) -> str:
        return GAP.join(cell(i, values[i]) for i in keep).rstrip()

    return [line([c.header for c in columns]), *(line(r) for r in rows)]


def print_table(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> None:
    """A table on stdout that fits the terminal (``fit``), its header bold where the terminal shows it."""
    header, *body = fit(columns, rows, terminal_width())
    stdout.print(header, style="bold", markup=False, highlight=False, soft_wrap=True)
    for text in body:
        stdout.print(text, markup=False, highlight=False, soft_wrap=True)

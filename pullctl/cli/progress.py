"""What people at a terminal see of a run: a progress bar while it goes, a summary when it ends (``run``,
``demo``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pullctl.cli import output


class ProgressObserver:
    """A rich progress bar on stderr: items done/failed, documents stored/duplicate, requests/s."""

    def __init__(self, label: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=output.stderr,
            transient=False,
        )
        self.label = label
        self.task: Any = None
        self._t0 = 0.0

    def _detail(self, record: Any) -> str:
        import time

        c = record.counts
        rate = c["requests"] / max(time.monotonic() - self._t0, 1e-6)
        failed = f"[red]{c['failed']} failed[/] · " if c["failed"] else ""
        return f"{failed}{c['stored']} stored · {c['duplicates']} dup · {rate:.0f} req/s"

    def started(self, record: Any, plan: Any) -> None:
        import time

        self._t0 = time.monotonic()
        self.progress.start()
        total = None if plan.streaming else len(plan.tasks)  # a parent's records: no total up front
        self.task = self.progress.add_task(self.label, total=total, detail="")

    def item_done(self, record: Any, key: str, error: str | None, attempts: int = 0) -> None:
        if error is not None:
            self.progress.console.print(f"[red]✗[/] {key}: ", end="")
            self.progress.console.print(error, markup=False)
        self.progress.update(self.task, advance=1, detail=self._detail(record))

    def stored(self, record: Any) -> None:
        if self.task is not None:
            self.progress.update(self.task, detail=self._detail(record))

    def dry_run_document(self, document: dict[str, Any]) -> None:
        output.print_json_line(document)

    def finished(self, record: Any) -> None:
        if self.task is not None:
            self.progress.update(self.task, detail=self._detail(record))
            self.progress.stop()


def print_summary(record: Any) -> None:
    """A finished run's record for people: counts, then its first errors."""
    from rich.table import Table

    colour = {"succeeded": "green", "partial": "yellow"}.get(record.status, "red")
    c = record.counts
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_row("run", f"{record.run_id} ([{colour}]{record.status}[/])")
    table.add_row("window", f"{record.window['start']} → {record.window['end']}")
    table.add_row(
        "items", f"{c['items']} · fetched {c['fetched']} · failed {c['failed']} · skipped {c['skipped']}"
    )
    table.add_row("documents", f"{c['stored']} stored · {c['duplicates']} duplicates · {c['pages']} pages")
    table.add_row(
        "requests",
        f"{c['requests']} · {c['retries']} retries"
        + (f" · {c['parent_requests']} to parents" if c.get("parent_requests") else "")
        + f" · {record.duration_seconds or 0:.2f} s",
    )
    if record.events["sent"] or record.events["pending"]:
        table.add_row("events", f"{record.events['sent']} sent · {record.events['pending']} pending")
    output.stderr.print(table)
    for err in record.errors[:20]:
        output.stderr.print(f"  [red]•[/] {err.item or 'run'}: ", end="")
        output.stderr.print(err.message, markup=False)
    if len(record.errors) > 20:
        output.stderr.print(
            f"  … and {len(record.errors) - 20} more (pullctl runs {record.source_id} --output json)"
        )


def backfill_summary(records: list[Any]) -> str:
    """One line over every window of a backfill."""
    statuses = [r.status for r in records]
    outcome = ", ".join(
        f"{statuses.count(s)} {s}" for s in ("succeeded", "partial", "failed") if s in statuses
    )
    stored = sum(r.counts["stored"] for r in records)
    duplicates = sum(r.counts["duplicates"] for r in records)
    span = f"{records[0].window['start']} → {records[-1].window['end']}"
    return (
        f"backfill {span}: {output.plural(len(records), 'window')}, {outcome};"
        f" {stored} stored, {duplicates} duplicates"
    )


def observers(source: str, interactive: bool) -> Callable[[Any], Any]:
    """The observer of each window of a run: a progress bar for people, JSON lines for pods and pipes."""

    def observer_for(window: Any) -> Any:
        from pullctl.run.report import JsonLogObserver

        if interactive:
            return ProgressObserver(source if window is None else f"{source} {window.start:%Y-%m-%d %H:%M}")
        return JsonLogObserver()

    return observer_for

"""`pullctl state`: what pullctl keeps between runs (incremental marks, SOURCES.md §7; the credential key)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from pullctl.cli import output
from pullctl.cli.options import ConfigOption, SourceArgument, StoreOption, TableOutputOption, complete_source
from pullctl.cli.output import Output, TableOrJson

app = typer.Typer(
    help="State kept between runs: incremental marks and the key that encrypts stored credentials.",
    no_args_is_help=True,
)

STATE_COLUMNS = (
    output.Column("SOURCE", whole=True),
    output.Column("ITEM", whole=True),  # what --item takes
    output.Column("VALUE"),
    output.Column("UPDATED (UTC)", drop=3),
    output.Column("BEHIND"),
    output.Column("RUN", whole=True, drop=2),
    output.Column("VERSION", drop=1),
)

ItemOption = Annotated[
    str | None,
    typer.Option(
        "--item", help="One iteration item's state (its key); @window is a since: last_success mark"
    ),
]


def _in_store(store: str | None, work: Any, *, read_only: bool = False) -> Any:
    """One library call on the store; a reading one (``read_only``) creates no database where none is."""
    from pullctl.pipeline.store import open_store
    from pullctl.settings import Settings

    async def main() -> Any:
        async with open_store(Settings.from_env(store=store), read_only=read_only) as backend:
            return await work(backend)

    return asyncio.run(main())


def _show(records: list[Any], out: Output) -> None:
    if out is TableOrJson.json:
        output.print_json([r.to_dict() for r in records])
        return
    from pullctl.config.templates import format_text
    from pullctl.pipeline.state import behind_seconds, format_behind

    rows = [
        [
            r.source_id,
            r.item or "-",
            format_text(r.value),
            r.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            format_behind(behind_seconds(r)),
            r.run_id or "(set by hand)",
            str(r.version),
        ]
        for r in records
    ]
    output.print_table(STATE_COLUMNS, rows)


def _show_one(record: Any, out: Output) -> None:
    if out is TableOrJson.json:
        output.print_json(record.to_dict())
        return
    _show([record], out)


@app.command("list")
def list_states(
    source: Annotated[
        str | None, typer.Argument(help="Only this source's states", autocompletion=complete_source)
    ] = None,
    store: StoreOption = None,
    out: TableOutputOption = TableOrJson.table,
) -> None:
    """List the incremental states (cursors, sync tokens, window marks) and how far behind each is.

    Example: pullctl state list crm-contacts --output json
    """
    _show(_in_store(store, lambda s: s.list_states(source), read_only=True), out)


@app.command("get")
def get_state(
    source: SourceArgument,
    item: ItemOption = None,
    store: StoreOption = None,
    out: TableOutputOption = TableOrJson.table,
) -> None:
    """Show one state: the source's own, or one item's (--item). Exit 2 when there is none.

    Example: pullctl state get crm-contacts --item acme --output json
    """
    from pullctl.errors import UsageError

    record = _in_store(store, lambda s: s.get_state(source, item), read_only=True)
    if record is None:
        what = f"item '{item}' of source '{source}'" if item else f"source '{source}'"
        raise UsageError(f"no state for {what} (see: pullctl state list {source})")
    _show_one(record, out)


@app.command("set")
def set_state(
    source: SourceArgument,
    value: Annotated[str, typer.Argument(help='The new value: JSON when it parses (42, "a b"), else text')],
    item: ItemOption = None,
    config: ConfigOption = None,
    store: StoreOption = None,
    out: TableOutputOption = TableOrJson.table,
) -> None:
    """Set a state by hand (backwards too): the next run starts from it. The source's config says which
    states it keeps: one no run would read is refused.

    Example: pullctl state set crm-contacts 2026-01-01T00:00:00Z --item acme
    """
    from pullctl.run.incremental import check_settable
    from pullctl.run.incremental import set_state as write
    from pullctl.run.service import load_source
    from pullctl.settings import Settings

    check_settable(load_source(Settings.from_env(config=config), source).config, item)

    try:
        parsed: Any = json.loads(value)
    except ValueError:
        parsed = value
    record = _in_store(store, lambda s: write(s, source, item, parsed))
    _show_one(record, out)


@app.command("reset")
def reset_state(
    source: SourceArgument,
    item: ItemOption = None,
    store: StoreOption = None,
    out: TableOutputOption = TableOrJson.table,
) -> None:
    """Forget a source's states (or one item's): the next run starts from initial_value, a full re-pull.

    Example: pullctl state reset crm-contacts --item acme
    """
    removed = _in_store(store, lambda s: s.delete_states(source, item))
    if out is TableOrJson.json:
        output.print_json({"source_id": source, "item": item, "removed": removed})
        return
    what = f"item '{item}' of {source}" if item else source
    output.note(f"removed {output.plural(removed, 'state')} of {what}", event="state_reset")


@app.command("keygen")
def keygen() -> None:
    """Print a new PULLCTL_STATE_KEY (it encrypts rotated refresh tokens kept in the store).

    Example: pullctl state keygen  # then store it as a Kubernetes Secret (docs/kubernetes.md)
    """
    from pullctl.pipeline.state_key import new_key

    typer.echo(new_key())

"""Incremental state (SOURCES.md §7): what a run starts from, what it saw, and how a mark moves.

Three kinds of mark live in ``source_state``, all through ``StateStore.swap_state`` (compare-and-swap on a
version):

- a **cursor** (``incremental.cursor_path``): the highest value of a record field that a succeeded item (or
  run) saw. It never moves backwards: ``advance`` compares, swaps, and on a lost race reads again, so two runs
  at once end at the higher mark.
- a **token** (``incremental.token_path``): the sync token of an item's last page. Tokens do not compare: a
  token replaces only the state the run started from; when another run moved it first, that run's token stays
  (both fetched from the same start, so neither skips anything).
- a **window mark** (``window.since: last_success``, item ``@window``, or ``@window:I/N`` per shard): the end
  of the last succeeded window, an instant, never moving backwards.

What a page says is gathered by ``Mark`` (pure); nothing is written until what produced it succeeded (the
runner and the service decide when). The window mark is kept here rather than derived from ``pull_runs``:
one read per run instead of a scan of the history (which a run of failures would push out of any limit),
the same never-backwards compare-and-swap as the cursors, and ``pullctl state set/reset`` work on it too.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pullctl.config import templates
from pullctl.config.models import Incremental, SourceConfig
from pullctl.config.paths import JsonPath, describe, parse_path
from pullctl.errors import FetchError, OptionsError, StoreError, UsageError
from pullctl.pipeline.state import StateRecord, behind_seconds, format_behind, utcnow
from pullctl.pipeline.store import StateStore
from pullctl.settings import Settings

if TYPE_CHECKING:
    from pullctl.run.context import RunOptions, RunState

logger = logging.getLogger("pullctl")
COMMIT_CONCURRENCY = 16  # state swaps in flight at the end of a run (per-item states)

WINDOW_ITEM = "@window"
MAX_SWAPS = 100  # a swap lost this many times in a row is no race any more: the store misbehaves


def window_item(shard: str | None = None) -> str:
    """The item key of a ``since: last_success`` mark: one per source, or one per shard (each pod covers its
    own share of the items, so one pod's success says nothing of the others')."""
    return WINDOW_ITEM if shard is None else f"{WINDOW_ITEM}:{shard}"


def compare(a: Any, b: Any) -> int:
    """-1, 0 or 1: numbers as numbers, instants as instants when both parse as ISO-8601, else as text."""
    if _number(a) and _number(b):
        return (a > b) - (a < b)
    x, y = templates.as_instant(a), templates.as_instant(b)
    if isinstance(x, datetime) and isinstance(y, datetime):
        return (x > y) - (x < y)
    s, t = templates.format_text(a), templates.format_text(b)
    return (s > t) - (s < t)


def _key(value: Any) -> tuple[str, Any]:
    """What ``compare`` compares ``value`` as, when the other value is of the same kind."""
    if _number(value):
        return "number", value
    instant = templates.as_instant(value)
    if isinstance(instant, datetime):
        return "instant", instant
    return "text", templates.format_text(value)


def later(a: Any, b: Any) -> bool:
    """Whether ``a`` is past ``b`` (``compare``)."""
    return compare(a, b) > 0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Mark:
    """What one item's pages said for its state: the highest cursor, or the last sync token. Pure.

    ``observe`` is the fetcher's hook, called for every response that ends or continues the item (kept
    pages, an empty last page, a response matched by an ``end`` rule). A cursor reads only records that are
    stored, so an ``end``-matched response (not stored) never moves it; a token is read from it (Asana's 412
    carries the first token)."""

    def __init__(self, config: Incremental) -> None:
        self.kind: Literal["cursor", "token"] = config.kind
        self.path: JsonPath = parse_path(config.cursor_path or config.token_path or "")
        self.expired_status = frozenset(config.expired_status)
        self.value: Any = None
        self.expired: int | None = None  # a response said the state sent is no longer valid
        self.pages = 0
        self._last: Any = None
        self._best: tuple[str, Any] = ("", None)  # the kind and comparable form of ``value`` (_key)

    def observe(self, status: int, data: Any, records: list[Any] | None, stored: bool = True) -> None:
        self.pages += 1
        self._last = data
        if status in self.expired_status:
            self.expired = status
        if self.kind == "token":
            found = self.path.find(data)
            if not found.missing and found.value not in (None, ""):
                self.value = found.value
            return
        if not stored:
            return
        if records is None:
            raise FetchError(
                f"incremental.cursor_path reads each record, but page {self.pages} is {describe(data)}, not a"
                " list of records: set records.path"
            )
        for number, record in enumerate(records):
            found = self.path.find(record)
            if found.missing:
                raise FetchError(
                    f"record {number} of page {self.pages} has no '{self.path}' ({describe(record)}):"
                    " incremental.cursor_path must be in every record"
                )
            value = found.value
            if value is None:
                continue
            key = _key(value)  # parsed once per record, compared with the best one's parsed form
            if self.value is None:
                better = True
            elif key[0] == self._best[0]:
                better = key[1] > self._best[1]
            else:
                better = later(value, self.value)
            if better:
                self.value, self._best = value, key

    def finish(self) -> Any:
        """The item's mark once it succeeded (None: nothing to move it to). A token source whose pages held
        no token fails the item: its state could never move, and the path is likely wrong."""
        if self.kind == "token" and self.value is None and self.pages:
            raise FetchError(
                f"incremental.token_path '{self.path}' is in none of the item's {self.pages} page(s)"
                f" (the last is {describe(self._last)}): the sync token cannot be kept"
            )
        return self.value


def merge(kind: str, marks: list[Any]) -> Any:
    """One source-wide mark from the items' marks (per_item: false): the highest cursor."""
    values = [m for m in marks if m is not None]
    if not values or kind != "cursor":
        return None
    best = values[0]
    for value in values[1:]:
        if later(value, best):
            best = value
    return best


class _Unread:
    """``advance(read=UNREAD)``: the caller has not read the state."""


UNREAD = _Unread()


@dataclass(frozen=True)
class Advanced:
    """What ``advance`` did: ``moved`` (the state is now ``value``) or kept ``current``, and why."""

    moved: bool
    current: StateRecord | None
    reason: str = ""


async def advance(
    store: StateStore,
    source_id: str,
    item: str | None,
    value: Any,
    run_id: str | None,
    *,
    kind: Literal["cursor", "token", "window"],
    started_from: int | None = None,
    read: StateRecord | _Unread | None = UNREAD,
) -> Advanced:
    """Move the state of ``(source_id, item)`` to ``value``, forwards only: read, compare, swap; on a lost
    race read again. A cursor or window mark moves only past the stored value; a token only replaces the
    version the run started from (``started_from``; 0 = there was none). ``read``: the state as the caller
    read it already (the run, at its start): the first swap tries it without reading again."""
    for attempt in range(MAX_SWAPS):
        current = (
            read if attempt == 0 and not isinstance(read, _Unread) else await store.get_state(source_id, item)
        )
        if kind == "token":
            if (current.version if current else 0) != (started_from or 0):
                return Advanced(False, current, "another run moved the token since this run read it")
        elif current is not None and not later(value, current.value):
            return Advanced(False, current, "the stored mark is not behind")
        record = (
            current.successor(value, run_id)
            if current is not None
            else StateRecord(source_id, item, value, run_id, version=1)
        )
        if await store.swap_state(record):
            return Advanced(True, record)
    raise StoreError(f"the state of {source_id} ({item or 'source'}) changed {MAX_SWAPS} times while written")


def check_settable(config: SourceConfig, item: str | None) -> None:
    """Refuse a hand-set state (``pullctl state set``) that no run of ``config`` would read: a source that
    keeps none, a window mark for a source without ``since: last_success``, an item's state for a source that
    keeps one state (or the other way round)."""
    source, ing = config.source_id, config.ingestion
    window = ing.window.since == "last_success"
    if item is not None and (item == WINDOW_ITEM or item.startswith(f"{WINDOW_ITEM}:")):
        if not window:
            detail = f"'{item}': {source} keeps no window mark (its window.since is not last_success)"
            raise OptionsError([("item", detail)])
        return
    if ing.incremental is None:
        if window:
            said = f"{WINDOW_ITEM} is needed:" if item is None else f"'{item}':"
            raise OptionsError([("item", f"{said} {source} keeps only its window mark (item {WINDOW_ITEM})")])
        raise UsageError(
            f"{source} keeps no state between runs (no ingestion.incremental, and its window.since is not"
            " last_success): a state set now would never be read"
        )
    if ing.per_item_state and item is None:
        detail = f"is needed: {source} keeps one state per item (incremental.per_item)"
        raise OptionsError([("item", detail)])
    if not ing.per_item_state and item is not None:
        detail = (
            f"'{item}': {source} keeps one state for the source (incremental.per_item: false): leave it out"
        )
        raise OptionsError([("item", detail)])


async def set_state(store: StateStore, source_id: str, item: str | None, value: Any) -> StateRecord:
    """An operator's value (``pullctl state set``): written as given, backwards too, over any race."""
    for _ in range(MAX_SWAPS):
        current = await store.get_state(source_id, item)
        record = (
            current.successor(value, None)
            if current is not None
            else StateRecord(source_id, item, value, None, version=1)
        )
        if await store.swap_state(record):
            return record
    raise StoreError(f"the state of {source_id} ({item or 'source'}) changed {MAX_SWAPS} times while written")


def summary(records: list[StateRecord], now: datetime | None = None) -> dict[str, Any] | None:
    """One source's states for ``list`` and ``runs``: how many, the mark (when there is one), and how far
    behind the furthest-behind one is. None when the source has no state."""
    if not records:
        return None
    now = now or utcnow()
    worst = max(records, key=lambda r: behind_seconds(r, now))
    return {
        "states": len(records),
        "value": records[0].value if len(records) == 1 else None,
        "item": worst.item,
        "behind_seconds": round(behind_seconds(worst, now), 3),
        "updated_at": max(r.updated_at for r in records).isoformat(),
    }


def log_kept(source_id: str, item: str | None, outcome: Advanced) -> None:
    if not outcome.moved and outcome.current is not None:
        logger.info(
            f"state of {source_id} ({item or 'source'}) kept at"
            f" {templates.format_text(outcome.current.value)}: {outcome.reason}",
            extra={"event": "state_kept"},
        )


def keeps_state(config: SourceConfig) -> bool:
    """Whether a source keeps a state between runs (an incremental cursor or token, a since: last_success
    window)."""
    ing = config.ingestion
    return ing.incremental is not None or ing.window.since == "last_success"


async def summaries(store: StateStore, now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """``summary`` of every source that has a state, by source id."""
    grouped: dict[str, list[StateRecord]] = {}
    for record in await store.list_states(None):
        grouped.setdefault(record.source_id, []).append(record)
    return {sid: s for sid, recs in grouped.items() if (s := summary(recs, now)) is not None}


def describe_summary(found: dict[str, Any] | None) -> str:
    """A summary in a table cell: ``2026-01-02T06:00:00+00:00 (2h 5m behind)``, ``40 states (3d 1h
    behind)``."""
    if found is None:
        return "-"
    what = templates.format_text(found["value"]) if found["states"] == 1 else f"{found['states']} states"
    return f"{what} ({format_behind(found['behind_seconds'])} behind)"


async def source_states(
    settings: Settings, configs: list[SourceConfig], now: datetime | None = None
) -> dict[str, dict[str, Any]]:
    """``summaries`` for ``pullctl list``: the store is opened only when a source keeps a state; one that
    cannot be read is a warning (the list is still shown)."""
    if not any(keeps_state(c) for c in configs):
        return {}
    from pullctl.errors import PullctlError
    from pullctl.pipeline.store import open_store

    try:
        async with open_store(settings, read_only=True) as store:
            return await summaries(store, now)
    except PullctlError as exc:
        logger.warning(f"the states are not shown: {exc.message}", extra={"event": "state_unreadable"})
        return {}


async def commit_states(state: RunState, options: RunOptions) -> None:
    """Advance the incremental state, once every document is stored (a crash before this re-fetches; the
    run record follows). Per item: each succeeded item's own mark. Per source: only when the run fetched
    every item (no failure, no --only/--limit/--replay)."""
    config = state.loaded.config
    inc = config.ingestion.incremental
    if inc is None or state.store is None or not options.commit_state or not state.marks:
        return
    record = state.record
    marks: dict[str | None, Any] = state.marks
    if not config.ingestion.per_item_state:
        partial = options.only or options.limit or options.replay_items
        if record.counts["failed"] or partial:
            why = f"{record.counts['failed']} item(s) failed" if record.counts["failed"] else "a partial run"
            logger.warning(
                f"{config.source_id}: state not advanced ({why}): the next run fetches from the same start",
                extra={"event": "state_kept"},
            )
            return
        marks = {None: merge(inc.kind, list(marks.values())) if inc.kind == "cursor" else marks.get(None)}
    store = state.store

    async def commit(item: str | None, value: Any) -> None:
        known = state.states.get(item)  # as the run read it: the first swap needs no read
        outcome = await advance(
            store,
            config.source_id,
            item,
            value,
            record.run_id,
            kind=inc.kind,
            started_from=known.version if known is not None else 0,
            read=known,
        )
        log_kept(config.source_id, item, outcome)

    pending = [(item, value) for item, value in marks.items() if value is not None]
    for start in range(0, len(pending), COMMIT_CONCURRENCY):
        await asyncio.gather(*(commit(i, v) for i, v in pending[start : start + COMMIT_CONCURRENCY]))

"""What the stores keep between runs: incremental state (``source_state``, SOURCES §7) and rotated credentials
(``auth_state``, SOURCES §6). Pure data, no I/O.

A state record changes only by compare-and-swap on its ``version`` (``StateStore.swap_state``): a writer reads
the record, decides, and writes ``version + 1`` only if nobody wrote in between, so two runs of one source at
once cannot overwrite each other's mark; the loser reads again and decides again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pullctl.config import templates


def utcnow() -> datetime:
    return datetime.now(UTC)


def state_id(source_id: str, item: str | None) -> str:
    """``_id`` of a state: the source id, or ``<source_id>/<item key>`` for one iteration item's state.

    Source ids hold no ``/`` (they are DNS labels), so the first ``/`` always splits the two apart."""
    return source_id if item is None else f"{source_id}/{item}"


@dataclass(frozen=True)
class StateRecord:
    """One incremental mark: a cursor value (the highest seen) or an opaque sync token (the last one).

    ``value`` is a JSON value. ``version`` counts the writes (1 for the first); ``run_id`` names the run that
    wrote it (None when an operator set it with ``pullctl state set``)."""

    source_id: str
    item: str | None
    value: Any
    run_id: str | None = None
    updated_at: datetime = field(default_factory=utcnow)
    version: int = 0

    @property
    def id(self) -> str:
        return state_id(self.source_id, self.item)

    def successor(self, value: Any, run_id: str | None, now: datetime | None = None) -> StateRecord:
        """The record that replaces this one (same key, the next version)."""
        return replace(self, value=value, run_id=run_id, updated_at=now or utcnow(), version=self.version + 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "source_id": self.source_id,
            "item": self.item,
            "value": self.value,
            "run_id": self.run_id,
            "updated_at": self.updated_at.astimezone(UTC).isoformat(),
            "version": self.version,
        }


@dataclass(frozen=True)
class AuthState:
    """A credential a provider handed out during a run and the next run needs (a rotated refresh token).

    ``key`` is what it belongs to (a source id, or a source id and an auth name); ``ciphertext`` is the
    credential encrypted with ``PULLCTL_STATE_KEY`` (the store never sees it in the clear); ``fingerprint``
    identifies the configured secret it replaced, so an operator who configures a new secret wins over a
    stale stored one."""

    key: str
    ciphertext: str
    fingerprint: str
    run_id: str | None = None
    updated_at: datetime = field(default_factory=utcnow)


def behind_seconds(record: StateRecord, now: datetime | None = None) -> float:
    """How far behind a mark is: to now from its instant (a cursor or window mark that is one), else from
    when it was last written (a token, a number)."""
    now = now or utcnow()
    instant = templates.as_instant(record.value) if isinstance(record.value, str) else None
    since = instant if isinstance(instant, datetime) else record.updated_at
    return max((now - since).total_seconds(), 0.0)


def format_behind(seconds: float | None) -> str:
    """``3d 4h``, ``2h 5m``, ``40s``: a lag for a table."""
    if seconds is None:
        return "-"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"

"""The text of flags as typed values, and the library's option fields spelled as the flags that set them.

The library speaks in fields (``RunOptions.shard``, ``RenderOptions.set_name``): an ``OptionsError`` names
them, and the one error handler (``cli/main.py``) says the flag a user typed instead (``FLAGS``). Parsing a
flag's text is the CLI's: the library takes a ``Shard``, a ``datetime``, a ``timedelta``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pullctl.errors import UsageError

if TYPE_CHECKING:
    from pullctl.pipeline.status import FailOn
    from pullctl.run.plan import Shard
    from pullctl.run.service import Backfill

FLAGS = {
    # run (RunOptions, Backfill)
    "shard": "--shard",
    "only": "--only",
    "overrides": "--set",
    "start": "--from",
    "end": "--to",
    "step": "--step",
    "replay": "--replay",
    # state set
    "item": "--item",
    # render, sync (RenderOptions)
    "image": "--image",
    "namespace": "--namespace",
    "set_name": "--set-name",
    "service_account": "--service-account",
    "store_secret": "--store-secret",
    "secret_refs": "--secret-ref",
    "pod_labels": "--pod-label",
    "env_from": "--env-from",
    # sync (the cluster)
    "context": "--context",
    "kubeconfig": "--kubeconfig",
}


def shard(text: str | None) -> Shard | None:
    """``--shard I/N``: this run's share of the items."""
    from pullctl.run.plan import Shard

    if text is None:
        return None
    m = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise UsageError(f"--shard '{text}': expected I/N with 0 <= I < N, e.g. 0/4")
    return Shard(int(m.group(1)), int(m.group(2)))


def assignments(values: Sequence[str] | None, flag: str) -> dict[str, list[str]]:
    """Repeated ``NAME=VALUE`` flags (``--only``): every value of each name, in order."""
    out: dict[str, list[str]] = {}
    for value in values or []:
        name, sep, rest = value.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"{flag} '{value}': expected NAME=VALUE")
        out.setdefault(name.strip(), []).append(rest)
    return out


def overrides(values: Sequence[str] | None) -> dict[str, str]:
    """``--set PARAM=VALUE``: the last value of each parameter wins."""
    return {name: given[-1] for name, given in assignments(values, "--set").items()}


def step(text: str) -> timedelta:
    """``--step``: ``1d``, ``6h``, ``30m``, ``1h30m`` (``schedule.parse_span``)."""
    from pullctl.config.schedule import ScheduleError, parse_span

    try:
        return parse_span(text)
    except ScheduleError:
        raise UsageError(f"--step '{text}': expected a duration such as 1d, 6h, 30m or 1h30m") from None


def instant(text: str, flag: str) -> datetime:
    """An ISO-8601 date or date-time (``--from``, ``--to``); naive values are UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{flag} '{text}': expected an ISO-8601 date or time, e.g. 2026-01-31 or 2026-01-31T06:00Z"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def backfill(start: str | None, end: str | None, length: str | None) -> Backfill | None:
    """``--from``/``--to``/``--step`` as a backfill (None: no backfill asked for)."""
    from pullctl.run.service import Backfill

    if start is None or end is None:
        return None
    begins, ends = instant(start, "--from"), instant(end, "--to")
    if ends <= begins:
        raise UsageError(f"--to ({ends.isoformat()}) must be after --from ({begins.isoformat()})")
    return Backfill(begins, ends, step(length) if length else None)


def fail_on(text: str | None) -> FailOn:
    """``status --fail-on``: ``stale=N``, ``failed``, ``partial``, comma-separated."""
    from pullctl.pipeline.status import FailOn

    if not text:
        return FailOn()
    stale: int | None = None
    flags: set[str] = set()
    for part in (p.strip() for p in text.split(",")):
        name, sep, value = part.partition("=")
        if name == "stale" and sep:
            if not value.isdigit():
                raise UsageError(f"--fail-on '{part}': stale takes a whole number of intervals, e.g. stale=2")
            stale = int(value)
        elif name in ("failed", "partial") and not sep:
            flags.add(name)
        else:
            raise UsageError(f"--fail-on '{part}': use stale=N, failed or partial, comma-separated")
    return FailOn(stale, "failed" in flags, "partial" in flags)

"""What one run shares between its planner, workers, parents and writer: its options, its observer, its
mutable state, and the secrets and tokens it resolves (with every value added to its redactor)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from pullctl.config.loader import LoadedSource
from pullctl.config.models import Request, SourceConfig
from pullctl.pipeline.documents import Document, RunRecord
from pullctl.pipeline.events import EventSink
from pullctl.pipeline.state import StateRecord
from pullctl.pipeline.store import PullStore
from pullctl.redact import Redactor
from pullctl.run.auth import TokenManager, open_tokens
from pullctl.run.plan import Plan, Shard
from pullctl.run.secrets import resolve_secret
from pullctl.run.windows import Window
from pullctl.settings import Settings, Trigger

if TYPE_CHECKING:
    from pullctl.dapr import DaprClient

BATCH_SIZE = 200


@dataclass
class RunOptions:
    trigger: Trigger = "manual"
    window: Window | None = None
    shard: Shard | None = None
    only: dict[str, list[str]] | None = None
    overrides: dict[str, str] | None = None
    limit: int | None = None
    concurrency: int | None = None
    dry_run: bool = False
    allow_jobs: bool = False  # a dry run creates report jobs too (job:); by default it creates none
    replay_items: list[str] | None = None  # run only these item keys (``run --replay``)
    run_id: str | None = None
    commit_state: bool = True  # advance the incremental state (a backfill: only with --advance-state)


class RunObserver(Protocol):
    """What a run reports while it goes: the CLI draws a progress bar or writes JSON log lines."""

    def started(self, record: RunRecord, plan: Plan) -> None: ...

    def item_done(self, record: RunRecord, key: str, error: str | None, attempts: int = 0) -> None: ...

    def stored(self, record: RunRecord) -> None: ...

    def dry_run_document(self, document: dict[str, Any]) -> None: ...

    def finished(self, record: RunRecord) -> None: ...


class SilentObserver:
    def started(self, record: RunRecord, plan: Plan) -> None: ...

    def item_done(self, record: RunRecord, key: str, error: str | None, attempts: int = 0) -> None: ...

    def stored(self, record: RunRecord) -> None: ...

    def dry_run_document(self, document: dict[str, Any]) -> None: ...

    def finished(self, record: RunRecord) -> None: ...


@dataclass
class RunState:
    """The mutable state of one run, shared by its workers and its writer."""

    loaded: LoadedSource
    record: RunRecord
    store: PullStore | None
    sink: EventSink
    observer: RunObserver
    redact: Redactor
    queue: asyncio.Queue[Document | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=BATCH_SIZE * 2)
    )
    dry_run: bool = False
    tokens: list[TokenManager] = field(default_factory=list)  # the run's and its parents', closed at its end
    dapr: DaprClient | None = None  # the sidecar client secrets are asked of (serve's), else their own
    states: dict[str | None, StateRecord] = field(default_factory=dict)  # incremental: as the run found them
    marks: dict[str | None, Any] = field(default_factory=dict)  # incremental: each succeeded item's mark


async def run_tokens(
    state: RunState,
    config: SourceConfig,
    named: dict[str, str],
    settings: Settings,
    transport: httpx.AsyncBaseTransport | None,
    sleep: Callable[[float], Awaitable[None]],
) -> TokenManager | None:
    """The token of ``config``'s oauth2/session auth for this run (None for static auth), closed at its end;
    ``transport`` None: it opens its own pool (the token URL's proxy)."""
    manager = await open_tokens(
        config,
        named,
        redact=state.redact,
        settings=settings,
        store=state.store,
        dry_run=state.dry_run,
        run_id=state.record.run_id,
        transport=transport,
        sleep=sleep,
    )
    if manager is not None:
        state.tokens.append(manager)
    return manager


async def run_secret(state: RunState, request: Request, settings: Settings) -> str | None:
    secret = await resolve_secret(request, settings, state.dapr)
    if secret and request.auth_type == "basic":
        state.redact.add_userinfo(secret)
    elif secret:
        state.redact.add(secret)
    return secret


def record_skipped(record: RunRecord, skipped: list[tuple[str, str]]) -> None:
    record.counts["skipped"] += len(skipped)
    for key, reason in skipped:
        record.add_error(key, f"skipped: {reason}")

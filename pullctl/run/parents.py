"""Items from another source (``iteration.from_source``, SOURCES §3): a child run's parent chain, fetched
now with each parent's own request, auth, pagination and records, and planned as the parent's pages arrive."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from pullctl.config.loader import LoadedSource
from pullctl.config.paths import describe
from pullctl.errors import FetchError, ItemSkippedError, IterationError
from pullctl.pipeline.documents import RequestCounts
from pullctl.run.context import RunState, record_skipped, run_secret, run_tokens
from pullctl.run.fetch import Fetcher
from pullctl.run.iteration import resolve_items
from pullctl.run.plan import FetchTask, Planner
from pullctl.run.reader import Page
from pullctl.run.secrets import resolve_named_secrets
from pullctl.run.windows import Window
from pullctl.settings import Settings


async def child_tasks(
    state: RunState,
    settings: Settings,
    planner: Planner,
    window: Window,
    transport: httpx.AsyncBaseTransport,
    sleep: Callable[[float], Awaitable[None]],
    create_jobs: bool = True,
) -> AsyncIterator[FetchTask]:
    """The tasks of a source over its parent's records, planned as the parent's pages arrive. ``create_jobs``
    False (a dry run): a parent's report job is not created either, and its item is skipped."""
    record = state.record
    parents = Parents(state, settings, window, transport, sleep, create_jobs)
    index = 0
    try:
        async for item, ancestors in parents.records(list(state.loaded.parents)):
            record.counts["items"] += 1
            before = len(planner.skipped)
            task = planner.item(item, index, ancestors)
            index += 1
            record_skipped(record, planner.skipped[before:])
            if task is not None:
                yield task
            if planner.full:
                break
        last = planner.flush()
        if last is not None:
            yield last
    finally:
        record.counts["parent_requests"] = parents.counts["requests"]


@dataclass
class Parents:
    """A child run's parent chain, fetched now: with each parent's own request, auth, pagination and records,
    in this run's window, through the run's transport. Nothing of it is stored."""

    state: RunState
    settings: Settings
    window: Window
    transport: httpx.AsyncBaseTransport
    sleep: Callable[[float], Awaitable[None]]
    create_jobs: bool = True
    counts: RequestCounts = field(default_factory=lambda: RequestCounts(requests=0, retries=0))

    async def records(
        self, chain: list[LoadedSource]
    ) -> AsyncIterator[tuple[dict[str, Any], dict[str, Any]]]:
        """Every record of ``chain[0]``'s pages, page by page, with the items its chain iterated over
        (``{foreach: item}``). A failed parent page ends the run: the child cannot know which of its items
        it would miss."""
        parent = chain[0]
        ing = parent.config.ingestion
        assert ing.request is not None
        secret = await run_secret(self.state, ing.request, self.settings)
        named = await resolve_named_secrets(ing, self.settings, self.state.redact, self.state.dapr)
        tokens = await run_tokens(self.state, parent.config, named, self.settings, None, self.sleep)
        fetcher = Fetcher(
            parent.config,
            self.transport,
            secret,
            self.state.redact,
            self.counts,
            sleep=self.sleep,
            tokens=tokens,
            create_jobs=self.create_jobs,
        )
        async for task, ancestors in self.tasks(chain, named):
            try:
                async for page in fetcher.pages(task):
                    for item in _items_of(page):
                        yield item, ancestors
            except (
                ItemSkippedError
            ) as exc:  # a skip rule, or a dry run's report job: counted, the chain goes on
                reason = f"parent item skipped: {exc.message}"
                record_skipped(self.state.record, [(f"{parent.source_id}:{task.key}", reason)])
            except FetchError as exc:
                message = f"parent source '{parent.source_id}' (item {task.key}): {exc.message}"
                raise IterationError(self.state.redact(message)) from None

    async def tasks(
        self, chain: list[LoadedSource], secrets: dict[str, str]
    ) -> AsyncIterator[tuple[FetchTask, dict[str, Any]]]:
        """``chain[0]``'s fetch tasks, each with the ancestors' items its records will carry. A parent item it
        skips is a skipped item of the run: the child cannot have that item's records."""
        parent, rest = chain[0], chain[1:]
        ing = parent.config.ingestion
        planner = Planner(parent.config, self.window, self.state.record.run_id, secrets=secrets)
        if ing.iteration is None:
            task = planner.single()
            if task is not None:
                yield task, {}
        elif ing.parent is not None:
            index = 0
            async for item, ancestors in self.records(rest):  # the grandparent's own secrets
                task = planner.item(item, index, ancestors)
                index += 1
                if task is not None:
                    yield task, {**ancestors, ing.iteration.foreach: item}
        else:
            for index, item in enumerate(await resolve_items(ing.iteration, self.settings) or []):
                task = planner.item(item, index)
                if task is not None:
                    yield task, {ing.iteration.foreach: item}
        skipped = [(f"{parent.source_id}:{k}", f"parent item skipped: {r}") for k, r in planner.skipped]
        record_skipped(self.state.record, skipped)


def _items_of(page: Page) -> list[dict[str, Any]]:
    """A parent page's records, which must be objects (a child's items)."""
    if page.records is None:
        raise FetchError(
            f"page {page.number} from {page.url} has no records list ({describe(page.data)}):"
            " set records.path"
        )
    for number, item in enumerate(page.records):
        if not isinstance(item, dict):
            raise FetchError(
                f"record {number} of page {page.number} from {page.url} is {describe(item)}, not an object:"
                " a child's items are objects"
            )
    return page.records

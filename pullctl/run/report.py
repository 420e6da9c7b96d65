"""Run observers: JSON log lines for pods and pipes, a rich progress bar for people at a terminal."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from pullctl.logs import JsonLines
from pullctl.pipeline.documents import RunRecord
from pullctl.run.plan import Plan

PROGRESS_INTERVAL_SECONDS = 10.0


class JsonLogObserver:
    """One JSON object per line on stderr: what log collectors in a cluster expect."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        interval: float = PROGRESS_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lines = JsonLines(stream)
        self.interval = interval  # a "progress" line at most this often, seconds (0: none)
        self._clock = clock
        self._next = clock() + interval
        self._done = 0

    def log(self, level: str, event: str, record: RunRecord, **fields: Any) -> None:
        self._lines(level, event, source_id=record.source_id, run_id=record.run_id, **fields)

    def started(self, record: RunRecord, plan: Plan) -> None:
        self.log(
            "info",
            "run_started",
            record,
            window=record.window,
            trigger=record.trigger,
            items=None if plan.streaming else plan.items,  # a parent's records: counted as they come
            tasks=None if plan.streaming else len(plan.tasks),
            skipped=len(plan.skipped),
            shard=record.shard,
        )
        for key, reason in plan.skipped:
            self.log("warning", "item_skipped", record, item=key, reason=reason)

    def item_done(self, record: RunRecord, key: str, error: str | None, attempts: int = 0) -> None:
        self._done += 1
        if error is not None:
            self.log("error", "item_failed", record, item=key, reason=error, attempts=attempts)
        self._progress(record)

    def stored(self, record: RunRecord) -> None:
        self._progress(record)

    def _progress(self, record: RunRecord) -> None:
        """A long run says how far it got every ``interval`` seconds: items done of all, and the counts."""
        if not self.interval or self._clock() < self._next:
            return
        self._next = self._clock() + self.interval
        self.log(
            "info", "progress", record, done=self._done, items=record.counts["items"], counts=record.counts
        )

    def dry_run_document(self, document: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(document, default=str, ensure_ascii=False) + "\n")

    def finished(self, record: RunRecord) -> None:
        level = {"succeeded": "info", "partial": "warning"}.get(record.status, "error")
        self.log(
            level,
            "run_finished",
            record,
            status=record.status,
            counts=record.counts,
            events=record.events,
            duration_seconds=record.duration_seconds,
            message=record.message,
        )

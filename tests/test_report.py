"""JSON log lines of a run (what a pod's log collector reads): progress on long runs, failures, the end."""

from __future__ import annotations

import io
import json

from pullctl.pipeline.documents import RunRecord
from pullctl.run.report import JsonLogObserver


def test_a_long_run_logs_progress_every_interval() -> None:
    now = [0.0]
    stream = io.StringIO()
    observer = JsonLogObserver(stream, interval=10, clock=lambda: now[0])
    record = RunRecord(run_id="r1", source_id="s", trigger="manual", window={})
    record.counts["items"] = 100
    for n in range(100):
        now[0] = n * 0.5  # an item every half second: 50 s in all
        record.counts["fetched"] += 1
        observer.item_done(record, f"k{n}", None)
    observer.stored(record)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["event"], line["done"]) for line in lines] == [
        ("progress", 21),
        ("progress", 41),
        ("progress", 61),
        ("progress", 81),
    ]
    assert lines[0]["items"] == 100 and lines[0]["counts"]["fetched"] == 21
    assert lines[0]["source_id"] == "s" and lines[0]["run_id"] == "r1" and lines[0]["level"] == "info"


def test_a_failed_item_is_logged_with_its_reason_and_attempts_and_no_progress_when_off() -> None:
    stream = io.StringIO()
    observer = JsonLogObserver(stream, interval=0)
    record = RunRecord(run_id="r1", source_id="s", trigger="manual", window={})
    for n in range(150):  # the run record keeps the first 100 errors; the log line has every item's
        record.add_error(f"e{n}", "earlier failure", 1)
    observer.item_done(record, "k1", "HTTP 503 Service Unavailable from https://api.example.com/x", 3)
    observer.item_done(record, "k2", None)
    [line] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert line["event"] == "item_failed" and line["level"] == "error"
    assert line["item"] == "k1" and line["attempts"] == 3
    assert line["reason"] == "HTTP 503 Service Unavailable from https://api.example.com/x"

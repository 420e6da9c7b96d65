"""Helpers for run tests: write a source config pointing at the test servers and run `pullctl` on it."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import Cli

# libyaml's emitter writes the same text as PyYAML's, three times faster (50,000 items: ~2.5 s, not ~7 s)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def write_source(folder: Path, source_id: str = "weather-api", **ingestion: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"source_id": source_id, "ingestion": {"schedule": "0 6 * * *", **ingestion}}
    path = folder / f"{source_id}.yaml"
    path.write_text(yaml.dump(doc, Dumper=_DUMPER, sort_keys=False))
    return path


def spots(count: int) -> list[dict[str, Any]]:
    """``count`` static items ``{"id", "lat", "lon"}`` with distinct coordinates (up to 1,296,000 items),
    so that every item's forecast from the test upstream is a different document."""
    return [
        {
            "id": f"p{n:06d}",
            "lat": round(-89.9 + (n % 1800) * 0.1, 1),
            "lon": round(-179.5 + (n // 1800) * 0.5, 1),
        }
        for n in range(count)
    ]


def write_load_source(
    folder: Path,
    upstream_url: str,
    items: int,
    *,
    source_id: str = "load",
    concurrency: int = 100,
    hourly: bool = False,
    **ingestion: Any,
) -> Path:
    """A source over ``spots(items)`` fetching ``/v1/forecast`` of the test upstream at ``concurrency``
    (``ingestion``: more fields of the ingestion block, e.g. ``deadline_seconds``).

    Retries are quick and many (10 attempts, 10-200 ms apart), so that injected 503s at a few percent
    cannot exhaust an item's attempts (at 5 %: 0.05**10 per item). ``hourly`` adds 48 hourly values to
    each response (about 1 KB instead of about 200 bytes).
    """
    parameters = {"latitude": "{spot.lat}", "longitude": "{spot.lon}"}
    if hourly:
        parameters["hourly"] = "temperature_2m"
    return write_source(
        folder,
        source_id,
        request={"base_url": f"{upstream_url}/v1/forecast", "parameters": parameters},
        iteration={"foreach": "spot", "items": spots(items), "key": "id", "concurrency": concurrency},
        retry={"max_attempts": 10, "initial_delay_seconds": 0.01, "max_delay_seconds": 0.2},
        dedup={"ignore_fields": ["generationtime_ms"]},
        **ingestion,
    )


def _proc_status_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (KiB) of a running process from /proc; empty when it is gone or not Linux."""
    try:
        with open(f"/proc/{pid}/status") as status:
            lines = status.read().splitlines()
    except OSError:
        return {}
    return {
        name: int(rest.split()[0])
        for name, _, rest in (line.partition(":") for line in lines)
        if name in ("VmRSS", "VmHWM")
    }


@dataclass
class ProcessRun:
    """What ``run_process`` saw. Memory is the child's own, in MB; None where /proc could not tell."""

    returncode: int
    stdout: str
    stderr: str
    wall: float
    peak_rss_mb: float | None  # VmHWM at the last sample before the child exited
    marked_at: float | None = None  # seconds from start until ``mark`` appeared on stderr
    rss_at_mark_mb: float | None = None  # VmRSS at that moment
    peak_rss_at_mark_mb: float | None = None  # VmHWM at that moment
    rss_after_mark_mb: list[float] = field(default_factory=list)  # VmRSS samples from then on


def run_process(
    cmd: Sequence[str],
    env: Mapping[str, str],
    workdir: Path,
    *,
    timeout: float,
    mark: str | None = None,
    interval: float = 0.1,
) -> ProcessRun:
    """Run ``cmd`` (stdout and stderr to files in ``workdir``) and sample its memory every ``interval`` s.

    The peak is the child's ``VmHWM`` from /proc, not ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` nor
    ``os.wait4``: a child that subprocess starts (vfork, then exec) keeps its parent's high-water mark
    in ``ru_maxrss``, so a large parent (pytest holding the items and the upstream) would be reported
    as the child's peak. ``mark``: a text on stderr (e.g. the ``run_started`` log line) that splits the
    run in two, to tell what loading costs from what the rest costs. Killed after ``timeout`` seconds.
    """
    out_path, err_path = workdir / "process.stdout", workdir / "process.stderr"
    workdir.mkdir(parents=True, exist_ok=True)
    run = ProcessRun(returncode=-1, stdout="", stderr="", wall=0.0, peak_rss_mb=None)
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=dict(env), cwd=workdir)
        try:
            while proc.poll() is None:
                now = time.perf_counter() - start
                if now > timeout:
                    proc.kill()
                    proc.wait()
                    raise TimeoutError(f"{' '.join(cmd)} still running after {timeout:g} s: killed")
                status = _proc_status_kib(proc.pid)
                if "VmHWM" in status:
                    run.peak_rss_mb = status["VmHWM"] / 1024
                    if run.marked_at is None and mark is not None and mark in err_path.read_text():
                        run.marked_at = now
                        run.rss_at_mark_mb = status["VmRSS"] / 1024
                        run.peak_rss_at_mark_mb = run.peak_rss_mb
                    if run.marked_at is not None:
                        run.rss_after_mark_mb.append(status["VmRSS"] / 1024)
                time.sleep(interval)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        run.wall = time.perf_counter() - start
    run.returncode = proc.returncode
    run.stdout, run.stderr = out_path.read_text(), err_path.read_text()
    return run


def weather(upstream_url: str, **extra: Any) -> dict[str, Any]:
    """The weather-api example's ingestion block, pointed at the test upstream."""
    base: dict[str, Any] = {
        "request": {
            "base_url": f"{upstream_url}/v1/forecast",
            "parameters": {
                "latitude": "{region.latitude}",
                "longitude": "{region.longitude}",
                "hourly": "temperature_2m",
            },
        },
        "iteration": {
            "foreach": "region",
            "source_mcp": "plantation-mcp",
            "source_tool": "list_active_regions",
            "key": "region_id",
        },
        "retry": {"initial_delay_seconds": 0.01, "max_delay_seconds": 0.05},
        "dedup": {"ignore_fields": ["generationtime_ms"]},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


class Runner:
    """`pullctl` with PULLCTL_CONFIG / PULLCTL_STORE set to a test folder and SQLite file."""

    def __init__(self, cli: Cli, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.cli = cli
        self.config = tmp / "configs"
        self.db = tmp / "store.db"
        self.env = {
            "PULLCTL_CONFIG": str(self.config),
            "PULLCTL_STORE": f"sqlite:///{self.db}",
            "PULLCTL_LOG_FORMAT": "json",
            **(env or {}),
        }

    def __call__(self, *args: str, **env: str) -> Any:
        return self.cli(*args, env={**self.env, **env})

    def run_json(self, *args: str, **env: str) -> tuple[int, list[dict[str, Any]], str]:
        result = self("run", *args, "--output", "json", **env)
        records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        return result.exit_code, records, result.stderr

    def documents(self, source_id: str = "weather-api") -> list[dict[str, Any]]:
        with sqlite3.connect(self.db) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(
                "SELECT * FROM raw_documents WHERE source_id = ? ORDER BY fetched_at", (source_id,)
            )
            out = []
            for r in rows:
                d = dict(r)
                for k in ("linkage", "window", "request"):
                    d[k] = json.loads(d[k])
                d["content"] = json.loads(d["content"])
                out.append(d)
            return out

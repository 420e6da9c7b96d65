"""`pullctl run` under load (issue 8, Load): N items at concurrency C, the upstream answering a share of requests 503.

Not a test (tests/reliability/test_load.py is the test): it prints figures. Each run gets a fresh upstream,
the test upstream (tests/servers/upstream.py, uvicorn + Starlette) in a process of its own, answering
``--fail-rate`` of its ``/v1/forecast`` requests 503 (``fail(..., fraction=)``, seeded); it reports the
requests it saw and the 503s it served when it stops. ``pullctl run`` runs as its own process too, over a
static list of N items (``tests.runkit.write_load_source``: 10 attempts, 10-200 ms apart), with
PULLCTL_STORE a fresh SQLite file; it must exit 0 having stored every item once.

Figures per item count: wall time of the process (start-up, config load and plan included) and the time
the fetch loop took (the run record's duration_seconds), items/s of each, requests, 503s served, retries,
stored; memory of the ``pullctl run`` process, sampled from /proc every 0.1 s (``tests.runkit.run_process``):
its peak (VmHWM), the peak reached by the time it logs ``run_started`` (config loaded, plan built, store
open: nothing fetched yet), and its RSS from then until it exits, at every tenth of that time (the fetch
loop, then the last sample after it). The peak RSS by item count shows whether memory grows with N, and the
two peaks tell what loading the configured items costs from what fetching them costs.

    .venv/bin/python bench/load_bench.py                                 # 10,000 and 50,000 items
    .venv/bin/python bench/load_bench.py --items 20000 --rss-items ""    # one run of 20,000 items
    .venv/bin/python bench/load_bench.py --hourly --fail-rate 0.2        # ~1 KB bodies, 20 % 503s
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run_bench import TIMEOUT, child_env
from tests.runkit import ProcessRun, run_process, write_load_source

SOURCE_ID = "load"
MARK = '"event": "run_started"'


def serve_upstream(fail_rate: float, seed: int) -> None:
    """The test upstream with ``fail_rate`` of /v1/forecast answered 503; prints its URL, then, when stdin
    closes (the parent stopped it, or died), the requests it saw and the 503s it served, as JSON."""
    from tests.servers.upstream import Upstream

    with Upstream() as upstream:
        rule = None
        if fail_rate > 0:
            rule = upstream.fail("/v1/forecast", "status", status=503, fraction=fail_rate, seed=seed)
        print(upstream.url, flush=True)
        sys.stdin.read()
        served = {"requests": upstream.hits["/v1/forecast"], "served_503": rule.applied if rule else 0}
    print(json.dumps(served), flush=True)


class UpstreamProcess:
    """``with UpstreamProcess(rate, seed) as up:`` ``serve_upstream`` in a child process; ``up.url``, and
    ``up.stop()`` returns what it served. Always stopped."""

    def __init__(self, fail_rate: float, seed: int) -> None:
        cmd = [sys.executable, __file__, "--role", "upstream", "--fail-rate", str(fail_rate)]
        self.proc = subprocess.Popen(
            [*cmd, "--seed", str(seed)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.stop()
            raise SystemExit(f"the upstream did not start (printed {self.url!r})")

    def __enter__(self) -> UpstreamProcess:
        return self

    def stop(self) -> dict[str, int]:
        try:
            out, _ = self.proc.communicate(timeout=30)  # closes stdin: the upstream stops and reports
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        lines = out.strip().splitlines()
        return json.loads(lines[-1]) if lines else {}

    def __exit__(self, *exc_info: object) -> None:
        if self.proc.poll() is None:
            self.stop()


@dataclass
class Result:
    items: int
    run: ProcessRun
    record: dict[str, Any]
    served: dict[str, int]

    @property
    def fetch_seconds(self) -> float:
        return float(self.record["duration_seconds"])


def run_once(items: int, args: argparse.Namespace, tmp: Path) -> Result:
    work = tmp / f"run-{items}"
    with UpstreamProcess(args.fail_rate, args.seed) as upstream:
        write_load_source(
            work / "cfg",
            upstream.url,
            items,
            source_id=SOURCE_ID,
            concurrency=args.concurrency,
            hourly=args.hourly,
        )
        env = child_env()
        env.update(
            PULLCTL_CONFIG=str(work / "cfg"),
            PULLCTL_STORE=f"sqlite:///{work / 'store.db'}",
            PULLCTL_LOG_FORMAT="json",
        )
        cmd = [sys.executable, "-m", "pullctl", "run", SOURCE_ID, "--output", "json"]
        run = run_process(cmd, env, work, timeout=TIMEOUT, mark=MARK)
        served = upstream.stop()
    if run.returncode != 0:
        raise SystemExit(f"pullctl run exited {run.returncode}\n{run.stderr[-2000:]}")
    record = json.loads(run.stdout.strip().splitlines()[-1])
    counts = record["counts"]
    if record["status"] != "succeeded" or counts["stored"] != items or counts["duplicates"]:
        raise SystemExit(
            f"pullctl run: status {record['status']}, counts {counts}, errors {record['errors'][:3]}"
        )
    return Result(items, run, record, served)


def tenths(samples: list[float]) -> list[float]:
    """The samples at 0 %, 10 %, ... 100 % of the list."""
    if not samples:
        return []
    return [samples[round(i * (len(samples) - 1) / 10)] for i in range(11)]


def mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def report(results: list[Result], args: argparse.Namespace) -> None:
    print()
    print(
        f"pullctl run under load: concurrency {args.concurrency}, {args.fail_rate:.0%} of requests answered 503"
        f" (seed {args.seed}), {'~1 KB' if args.hourly else '~200 B'} JSON bodies, upstream in its own process,"
        f" {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    header = (
        f"{'items':>7}{'wall s':>8}{'fetch s':>9}{'items/s wall':>14}{'items/s fetch':>15}{'requests':>10}"
        f"{'503s':>7}{'retries':>9}{'stored':>8}{'peak RSS MB':>13}{'at start MB':>13}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        c = r.record["counts"]
        print(
            f"{r.items:>7}{r.run.wall:>8.1f}{r.fetch_seconds:>9.1f}{r.items / r.run.wall:>14,.0f}"
            f"{r.items / r.fetch_seconds:>15,.0f}{c['requests']:>10}{r.served.get('served_503', 0):>7}"
            f"{c['retries']:>9}{c['stored']:>8}{mb(r.run.peak_rss_mb):>13}{mb(r.run.peak_rss_at_mark_mb):>13}"
        )
    print()
    print("'at start': the peak RSS reached by the run_started log line (config loaded, plan built, nothing")
    print(
        "fetched yet). RSS of pullctl run from run_started until it exits, at each tenth of that time (MB):"
    )
    for r in results:
        print(f"  {r.items:>7} items: " + " ".join(f"{v:.0f}" for v in tenths(r.run.rss_after_mark_mb)))
    for r in results:
        if r.served.get("requests") not in (None, r.record["counts"]["requests"]):
            print(f"  note: the upstream saw {r.served['requests']} requests, the run record counts", end=" ")
            print(f"{r.record['counts']['requests']} ({r.items} items)")
    if len(results) > 1:
        first, last = results[0], results[-1]
        per_k = 1000 / (last.items - first.items)
        if first.run.peak_rss_mb is not None and last.run.peak_rss_mb is not None:
            grow = (last.run.peak_rss_mb - first.run.peak_rss_mb) * per_k
            print(f"peak RSS growth per 1,000 items, {first.items} -> {last.items}: {grow:+.2f} MB", end="")
            if first.run.peak_rss_at_mark_mb is not None and last.run.peak_rss_at_mark_mb is not None:
                at_start = (last.run.peak_rss_at_mark_mb - first.run.peak_rss_at_mark_mb) * per_k
                print(f" ({at_start:+.2f} MB of it by run_started)", end="")
            print()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=50_000, help="items of the main run (default 50,000)")
    parser.add_argument("--concurrency", type=int, default=100, help="in-flight items (default 100)")
    parser.add_argument(
        "--fail-rate", type=float, default=0.05, help="share of requests answered 503 (default 0.05)"
    )
    parser.add_argument(
        "--rss-items",
        default="10000",
        help="other item counts to run, for peak RSS against the item count (comma-separated; default 10000)",
    )
    parser.add_argument(
        "--hourly", action="store_true", help="~1 KB bodies (48 hourly values) instead of ~200 B"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the upstream's 503 draws (default 0)")
    parser.add_argument("--role", choices=("bench", "upstream"), default="bench", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 0 <= args.fail_rate < 1:
        parser.error("--fail-rate must be in [0, 1)")
    if args.role == "upstream":
        serve_upstream(args.fail_rate, args.seed)
        return
    counts = sorted({args.items, *(int(n) for n in args.rss_items.split(",") if n.strip())})
    results = []
    with tempfile.TemporaryDirectory(prefix="pullctl-load-bench-") as tmp:
        for items in counts:
            result = run_once(items, args, Path(tmp))
            results.append(result)
            print(
                f"{items:>7} items  {result.run.wall:6.1f} s wall  {result.fetch_seconds:6.1f} s fetch"
                f"  peak {mb(result.run.peak_rss_mb)} MB",
                file=sys.stderr,
                flush=True,
            )
    report(results, args)


if __name__ == "__main__":
    main()

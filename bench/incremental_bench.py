"""Incremental pulls against full pulls (issue 16, Benchmark): a 1,000-item source where 1 % of the records
change between runs.

Not a test: it prints figures. The upstream is the loopback change feed of the tests
(``tests/servers/upstream.py``, block "incremental (issue 16)") in this process; pullctl runs as
``python -m pullctl run SOURCE --output json`` subprocesses on a fresh SQLite store. Each of ``--items``
accounts holds ``--records`` records (``{"id", "account", "updated_at", "version"}``), paged by offset
``--page-size`` at a time (one document per record, ``records.split``). Two sources over the same accounts:

    full         every record of every account, every run
    incremental  ``updated_since: "{incremental.start}"`` with ``incremental: {cursor_path: updated_at}``, one
                 state per account (the records at the mark come again: >=, and dedup absorbs them)

Both run once (the first pull, the same for both), then ``--change`` (default 1 %) of the records change,
spread over random accounts, and both run again. The second runs are compared: requests, pages,
documents written (stored + duplicates), stored, wall seconds.

    .venv/bin/python bench/incremental_bench.py                    # 1,000 items x 50 records, 1 % change
    .venv/bin/python bench/incremental_bench.py --items 200 --records 20 --change 5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.runkit import write_source  # noqa: E402
from tests.servers.upstream import Upstream  # noqa: E402


def write_sources(folder: Path, url: str, accounts: list[str], page_size: int) -> None:
    common: dict[str, Any] = {
        "iteration": {
            "foreach": "account",
            "items": [{"id": a} for a in accounts],
            "key": "id",
            "concurrency": 20,
        },
        "records": {"path": "data", "split": True},
        "pagination": {"type": "offset", "limit": page_size},
        "retry": {"max_attempts": 3, "initial_delay_seconds": 0.05},
    }
    base = f"{url}/inc/{{account.id}}/records"
    write_source(folder, "full", request={"base_url": base}, **common)
    write_source(
        folder,
        "incremental",
        request={"base_url": base, "parameters": {"updated_since": "{incremental.start}"}},
        incremental={"cursor_path": "updated_at"},
        **common,
    )


def run(source: str, env: dict[str, str]) -> dict[str, Any]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pullctl", "run", source, "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"pullctl run {source} exited {done.returncode}: {done.stderr[-2000:]}")
    record = json.loads(done.stdout.splitlines()[-1])
    return {**record["counts"], "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1000, help="accounts (iteration items; default 1,000)")
    parser.add_argument("--records", type=int, default=50, help="records per account (default 50)")
    parser.add_argument("--page-size", type=int, default=20, help="records per page (default 20)")
    parser.add_argument("--change", type=float, default=1.0, help="percent of records changed (default 1)")
    args = parser.parse_args()

    accounts = [f"acct{n:05d}" for n in range(args.items)]
    with Upstream() as upstream, tempfile.TemporaryDirectory() as tmp:
        for account in accounts:
            upstream.feed.add(account, args.records)
        folder = Path(tmp) / "configs"
        write_sources(folder, upstream.url, accounts, args.page_size)
        env = {
            **os.environ,
            "PULLCTL_CONFIG": str(folder),
            "PULLCTL_STORE": f"sqlite:///{tmp}/store.db",
            "PULLCTL_LOG_FORMAT": "json",
        }
        first = {source: run(source, env) for source in ("full", "incremental")}
        total = args.items * args.records
        changed = max(1, round(total * args.change / 100))
        rng = random.Random(16)
        picks = rng.sample(range(total), changed)
        for pick in picks:
            account = accounts[pick // args.records]
            upstream.feed.touch(account, [f"{account}-r{pick % args.records + 1}"])
        second = {source: run(source, env) for source in ("full", "incremental")}

    print(
        f"incremental bench: {args.items:,} items x {args.records} records ({total:,}), pages of"
        f" {args.page_size}; {changed:,} records ({args.change:g} %) changed between the runs;"
        f" {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    header = f"{'run':<22}{'requests':>10}{'pages':>9}{'documents':>11}{'stored':>9}{'duplicates':>12}{'wall s':>9}"
    print(header)
    print("-" * len(header))
    for label, figures in (
        ("first, full", first["full"]),
        ("first, incremental", first["incremental"]),
        ("second, full", second["full"]),
        ("second, incremental", second["incremental"]),
    ):
        documents = figures["stored"] + figures["duplicates"]
        print(
            f"{label:<22}{figures['requests']:>10,}{figures['pages']:>9,}{documents:>11,}{figures['stored']:>9,}"
            f"{figures['duplicates']:>12,}{figures['wall']:>9.2f}"
        )
    full, inc = second["full"], second["incremental"]
    docs = lambda f: f["stored"] + f["duplicates"]  # noqa: E731
    print(
        f"\nsecond run, incremental vs full: {inc['requests'] / full['requests']:.2f}x the requests,"
        f" {docs(inc) / docs(full):.3f}x the documents, the same {inc['stored']:,} new ones stored"
        f" (full: {full['stored']:,}); the duplicates it reads are the records at each item's mark (>=)"
    )


if __name__ == "__main__":
    main()

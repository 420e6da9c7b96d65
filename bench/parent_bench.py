"""Parent/child fan-out (``iteration.from_source``) throughput and memory (issue 13, Benchmark).

Not a test: it prints figures. Built on ``bench/run_bench.py`` (imported, not copied): the same minimal
asyncio HTTP/1.1 upstream in its own process, the same fresh ``python -m pullctl run bench-api --output json
--concurrency C`` subprocess per measured run (PULLCTL_CONFIG in a temporary folder, PULLCTL_STORE a fresh
SQLite file per run, PULLCTL_LOG_FORMAT=json), peak RSS and CPU seconds from ``os.wait4``. This bench's
upstream adds two endpoints to run_bench's ``GET /v1/forecast?region=NAME`` (~2 KB JSON):

    GET /v1/regions?offset=O&limit=L&total=N   the parent: ``{"data": [{"id": "r00000"}, ...], "total": N}``,
                                               records O .. O+L-1 of N, generated per page, nothing held
    GET /v1/tiny?region=NAME                   a cheap child: ``{"region": "NAME"}``

The parent source ``bench-regions`` pages ``/v1/regions`` by offset (``--page-size`` records a page, an empty
page ends it, so N / page-size + 1 requests) with ``records: {path: data}`` and no schedule; the child
``bench-api`` fetches one URL per parent record (``iteration: {foreach: region, from_source: bench-regions,
key: id}``) and stores each response as a document. It measures:

1. Fan-out: the child over a parent of ``--records`` records (default 10,000) fetching ``/v1/forecast`` at
   ``--concurrency`` (default 50), beside the same ``--records`` child fetches from a static ``items:``
   list (run_bench's config: ``iteration.items`` instead of ``from_source``). Medians of ``--repeat`` runs,
   the two variants interleaved; "items/s wall" is records over the process's wall time (start-up and
   imports included), "items/s loop" over the run record's duration_seconds (parent paging included),
   "items/CPU-s" over the process's user + system CPU seconds (a busy machine disturbs that least).
2. Memory flat in the parent's size: peak RSS of one child run per ``--rss-records`` count (default 1,000,
   20,000, 50,000 and 200,000 parent records) fetching the cheap ``/v1/tiny`` at ``--rss-concurrency``
   (default 100), so 200,000 fetches stay within a couple of minutes on 2 cores. Every record is fetched
   and stored (``--limit`` would stop paging the parent early and hide any growth). The output says
   plainly whether peak RSS grows with the parent's size.

    .venv/bin/python bench/parent_bench.py                                   # the defaults (~5 min on 2 cores)
    .venv/bin/python bench/parent_bench.py --records 2000 --repeat 1 --rss-records 1000,20000   # a quick round
    .venv/bin/python bench/parent_bench.py --records 10000 --concurrency 50 --rss-records ""    # fan-out only
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run_bench import (
    NAME_RE,
    SOURCE_ID,
    Cell,
    Sample,
    UpstreamProcess,
    forecast,
    pullctl_cmd,
    region,
    route,
    run_config,
    serve_upstream,
    write_config,
)

PARENT_ID = "bench-regions"
VARIANTS = ("from_source", "static items")
GROWTH_TOLERANCE_MB = 5.0  # peak RSS within this (or 5 %) of the smallest count's is "flat"


# -- the upstream: run_bench's, plus the parent's pages and a cheap child ---------------------------------


def regions_page(offset: int, limit: int, total: int) -> bytes:
    """Records ``offset`` .. ``offset + limit - 1`` of ``total``, built for this request only."""
    ids = b",".join(b'{"id":"%s"}' % region(i).encode() for i in range(offset, min(offset + limit, total)))
    return b'{"data":[%s],"total":%d}' % (ids, total)


def parent_route(target: bytes) -> tuple[int, bytes]:
    """``/v1/regions`` (the parent's pages), ``/v1/tiny`` (a ~20-byte child), else run_bench's ``route``."""
    path, _, query = target.partition(b"?")
    if path == b"/v1/regions":
        q = dict(parse_qsl(query.decode()))
        try:
            offset, limit, total = int(q.get("offset", "0")), int(q.get("limit", "100")), int(q["total"])
        except (KeyError, ValueError):
            return 400, b'{"error":true,"reason":"offset, limit and total must be integers"}'
        if offset < 0 or not 0 < limit <= 10_000:
            return 400, b'{"error":true,"reason":"offset >= 0, 0 < limit <= 10000"}'
        return 200, regions_page(offset, limit, total)
    if path == b"/v1/tiny":
        name = dict(parse_qsl(query.decode())).get("region", "")
        if not NAME_RE.fullmatch(name):
            return 400, b'{"error":true,"reason":"region must match [A-Za-z0-9_-]{1,64}"}'
        return 200, b'{"region":"%s"}' % name.encode()
    return route(target)


# -- the configs ------------------------------------------------------------------------------------------


def write_parent_child(
    folder: Path, origin: str, records: int, endpoint: str, concurrency: int, page: int
) -> None:
    """``bench-regions`` (``records`` records, ``page`` a page) and ``bench-api`` over its records."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{PARENT_ID}.yaml").write_text(
        f"source_id: {PARENT_ID}\n"
        "ingestion:\n"
        "  request:\n"
        f"    base_url: {origin}/v1/regions\n"
        "    parameters:\n"
        f"      total: {records}\n"
        "  records:\n"
        "    path: data\n"
        "  pagination:\n"
        "    type: offset\n"
        f"    limit: {page}\n"
        f"    max_pages: {records // page + 2}\n"
    )
    (folder / f"{SOURCE_ID}.yaml").write_text(
        f"source_id: {SOURCE_ID}\n"
        "ingestion:\n"
        '  schedule: "0 * * * *"\n'
        "  request:\n"
        f"    base_url: {origin}{endpoint}\n"
        "    parameters:\n"
        '      region: "{region.id}"\n'
        "  iteration:\n"
        "    foreach: region\n"
        f"    from_source: {PARENT_ID}\n"
        "    key: id\n"
        f"    concurrency: {concurrency}\n"
    )


def parent_requests(records: int, page: int) -> int:
    return records // page + 1  # offset pages end at the first empty one (or at a shorter one)


def run_child(
    variant: str, origin: str, records: int, concurrency: int, page: int, tmp: Path, endpoint: str
) -> tuple[Sample, dict[str, Any]]:
    """One ``pullctl run bench-api`` of ``records`` child fetches: over the parent, or a static list."""
    config = tmp / f"{variant.replace(' ', '-')}-{records}-{endpoint.rsplit('/', 1)[1]}-{concurrency}"
    if not config.exists():
        if variant == "from_source":
            write_parent_child(config, origin, records, endpoint, concurrency, page)
        else:
            write_config(config, origin + endpoint, records)
    sample, record = run_config(config, pullctl_cmd(concurrency), records, tmp)
    counts = record["counts"]
    want_parent = parent_requests(records, page) if variant == "from_source" else 0
    got = (counts["items"], counts["fetched"], counts.get("parent_requests", 0))
    if got != (records, records, want_parent):
        raise SystemExit(
            f"{variant}: items, fetched, parent_requests {got} != {(records, records, want_parent)}"
        )
    return sample, record


# -- the report -------------------------------------------------------------------------------------------


def reproduce(args: argparse.Namespace) -> str:
    rss = ",".join(str(n) for n in args.rss_records)
    return (
        f".venv/bin/python bench/parent_bench.py --records {args.records} --concurrency {args.concurrency}"
        f' --repeat {args.repeat} --page-size {args.page_size} --rss-records "{rss}"'
        f" --rss-concurrency {args.rss_concurrency}"
    )


def report(
    args: argparse.Namespace,
    fan_out: dict[str, Cell],
    rss: list[tuple[int, Sample]],
    load: list[tuple[float, float, float]],
) -> None:
    before, after = load
    print()
    print(
        f"pullctl parent/child benchmark: {args.records} child fetches of {len(forecast(region(0)))} B JSON,"
        f" parent pages of {args.page_size} records, raw upstream in its own process, medians of"
        f" {args.repeat} run(s), {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print(
        f"load average (1/5/15 min) before: {before[0]:.2f} {before[1]:.2f} {before[2]:.2f};"
        f" after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}",
        end="",
    )
    print("  (other work on the machine: compare the CPU columns)" if max(before[0], after[0]) > 0.7 else "")
    if fan_out:
        print()
        header = (
            f"{'variant':<14}{'records':>8}{'conc':>5}{'parent req':>11}{'wall s':>8}{'items/s wall':>14}"
            f"{'items/s loop':>14}{'CPU s':>8}{'items/CPU-s':>13}{'peak RSS MB':>13}"
        )
        print(header)
        print("-" * len(header))
        for v in VARIANTS:
            cell = fan_out[v]
            preq = parent_requests(args.records, args.page_size) if v == "from_source" else 0
            print(
                f"{v:<14}{cell.items:>8}{cell.concurrency:>5}{preq:>11}{cell.median('wall'):>8.2f}"
                f"{cell.per_second:>14,.0f}{cell.loop_per_second:>14,.0f}{cell.median('cpu'):>8.2f}"
                f"{cell.per_cpu_second:>13,.0f}{cell.peak_rss:>13.1f}"
            )
        mine, theirs = fan_out["from_source"], fan_out["static items"]
        print(
            f"from_source / static items: {mine.per_second / theirs.per_second:.2f}x items/s wall,"
            f" {mine.loop_per_second / theirs.loop_per_second:.2f}x loop,"
            f" {mine.per_cpu_second / theirs.per_cpu_second:.2f}x per CPU-s;"
            f" peak RSS {mine.peak_rss - theirs.peak_rss:+.1f} MB"
        )
    if rss:
        print()
        print(
            f"peak RSS by parent size: one child run per count, /v1/tiny child ({len(parent_route(b'/v1/tiny?region=r00000')[1])} B),"
            f" concurrency {args.rss_concurrency}, every record fetched and stored"
        )
        print(
            f"  {'parent records':>14}{'wall s':>9}{'items/s wall':>14}{'CPU s':>8}{'peak RSS MB':>13}{'vs first':>10}"
        )
        first_n, first = rss[0]
        for n, s in rss:
            print(
                f"  {n:>14,}{s.wall:>9.2f}{n / s.wall:>14,.0f}{s.cpu:>8.2f}{s.rss_mb:>13.1f}"
                f"{s.rss_mb - first.rss_mb:>+10.1f}"
            )
        if len(rss) > 1:
            last_n, last = rss[-1]
            grow = last.rss_mb - first.rss_mb
            per_k = grow / ((last_n - first_n) / 1000)
            flat = grow <= max(GROWTH_TOLERANCE_MB, 0.05 * first.rss_mb)
            verdict = (
                "FLAT: peak RSS does not grow with the parent's size"
                if flat
                else "GROWS: peak RSS grows with the parent's size"
            )
            print(
                f"  {verdict} ({grow:+.1f} MB from {first_n:,} to {last_n:,} records,"
                f" {per_k:+.3f} MB per 1,000; flat means within {GROWTH_TOLERANCE_MB:.0f} MB or 5 %)"
            )
    print()
    print(f"reproduce: {reproduce(args)}")


def counts(text: str) -> list[int]:
    return sorted({int(n.replace("_", "")) for n in text.split(",") if n.strip()})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--records", type=int, default=10_000, help="fan-out: parent records (default 10,000)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=50, help="fan-out: in-flight child items (default 50)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="fan-out: runs per variant, medians shown (default 3)"
    )
    parser.add_argument("--page-size", type=int, default=1000, help="parent records per page (default 1,000)")
    parser.add_argument(
        "--rss-records",
        type=counts,
        default=[1_000, 20_000, 50_000, 200_000],
        help='parent sizes for the RSS check, comma-separated ("" skips it; default 1000,20000,50000,200000)',
    )
    parser.add_argument(
        "--rss-concurrency", type=int, default=100, help="RSS check: in-flight child items (default 100)"
    )
    parser.add_argument("--role", choices=("bench", "upstream"), default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--upstream", choices=("raw",), default="raw", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "upstream":
        serve_upstream("raw", parent_route)
        return

    fan_out: dict[str, Cell] = {}
    rss: list[tuple[int, Sample]] = []
    load = [os.getloadavg()]
    with (
        tempfile.TemporaryDirectory(prefix="pullctl-parent-bench-") as tmp_name,
        UpstreamProcess("raw", script=__file__, path="") as origin,
    ):
        tmp = Path(tmp_name)
        if args.records > 0:
            for rnd in range(1, args.repeat + 1):
                for v in VARIANTS:
                    cell = fan_out.setdefault(v, Cell(v, args.concurrency, args.records))
                    s, _ = run_child(
                        v, origin, args.records, args.concurrency, args.page_size, tmp, "/v1/forecast"
                    )
                    cell.samples.append(s)
                    print(
                        f"round {rnd}/{args.repeat}  {v:<13} {args.records:>7} records conc {args.concurrency:>3}"
                        f"  {s.wall:6.2f} s wall  {s.loop:6.2f} s loop  {s.cpu:6.2f} s CPU  {s.rss_mb:6.1f} MB",
                        file=sys.stderr,
                        flush=True,
                    )
        for n in args.rss_records:
            s, _ = run_child("from_source", origin, n, args.rss_concurrency, args.page_size, tmp, "/v1/tiny")
            rss.append((n, s))
            print(
                f"rss check  from_source {n:>7} records conc {args.rss_concurrency:>3}  {s.wall:6.2f} s wall"
                f"  {s.cpu:6.2f} s CPU  {s.rss_mb:6.1f} MB",
                file=sys.stderr,
                flush=True,
            )
    load.append(os.getloadavg())
    report(args, fan_out, rss, load)


if __name__ == "__main__":
    main()

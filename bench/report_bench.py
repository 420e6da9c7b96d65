"""A large CSV export through a report job, streamed into split records (issue 17, Benchmark).

Not a test: it prints figures. An upstream in its own process (aiohttp.web, so it does not share the GIL
with the client) serves an export job: ``POST /jobs`` creates it, ``GET /jobs/1`` answers ``done`` with a
download URL, and ``GET /export.csv.gz?mb=N`` streams N MB (decompressed) of CSV rows, generated as they are
sent and gzip-compressed on the fly (``--plain``: no gzip): no file on disk, nothing held. Each size runs
``pullctl run export --output json`` in a fresh subprocess with a fresh SQLite store, ``response.format:
csv`` and ``records.split: true``, so every row becomes a stored document; its peak RSS is the child's own
``VmHWM`` sampled from /proc. The figures: rows stored per second of the run (the run record's
duration_seconds) and of wall time, and peak RSS by export size, which must stay flat (the body streams from
the socket through zlib, the CSV parser and the bounded document queue into the store).

    .venv/bin/python bench/report_bench.py                 # 50 MB and 500 MB (about 4 minutes on 2 cores)
    .venv/bin/python bench/report_bench.py --mb 20         # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ROW_BYTES_APPROX = 100


def row(i: int) -> str:
    """One CSV row of about 200 bytes; a quoted field with a comma, like real exports have."""
    return (
        f"{i},user-{i:09d}@example.com,Customer {i % 7919} Ltd,{i % 9973}.{i % 100:02d},EUR,"
        f"2026-01-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z,{i * 2654435761 % 2**32:08x}-{i % 65521:04x},"
        f'"note {i % 1000}, quoted, as exports write them",{"active" if i % 3 else "churned"},{i % 5}\n'
    )


HEADER = "id,email,company,amount,currency,created_at,ref,note,state,tier\n"


# -- the upstream (its own process) -------------------------------------------------------------------


def serve(plain: bool) -> None:
    import asyncio

    from aiohttp import web

    async def create(request: web.Request) -> web.Response:
        return web.json_response({"id": "1", "status": "queued"}, status=201)

    async def poll(request: web.Request) -> web.Response:
        mb = request.query.get("mb", "1")
        url = f"http://127.0.0.1:{request.url.port}/export.csv.gz?mb={mb}&sig=presigned"
        return web.json_response({"id": "1", "status": "done", "urls": [url]})

    async def export(request: web.Request) -> web.StreamResponse:
        target = int(float(request.query["mb"]) * 1_000_000)
        response = web.StreamResponse(
            headers={"Content-Type": "application/gzip" if not plain else "text/csv"}
        )
        await response.prepare(request)
        compressor = None if plain else zlib.compressobj(1, zlib.DEFLATED, 31)
        sent, i = 0, 0
        block = HEADER
        while sent < target:
            lines = [row(n) for n in range(i, i + 5000)]
            i += 5000
            block += "".join(lines)
            data = block.encode()
            block = ""
            sent += len(data)
            out = data if compressor is None else compressor.compress(data)
            if out:
                await response.write(out)
        if compressor is not None:
            await response.write(compressor.flush())
        await response.write_eof()
        return response

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/jobs", create)
        app.router.add_get("/jobs/{id}", poll)
        app.router.add_get("/export.csv.gz", export)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent goes
        await runner.cleanup()

    asyncio.run(main())


def _count_lines(pipe: Any, counter: list[int]) -> None:
    while chunk := pipe.read(1 << 20):
        counter[0] += chunk.count(b"\n")


# -- one pullctl run --------------------------------------------------------------------------------------


def write_config(folder: Path, origin: str, mb: float) -> None:
    import yaml

    cap = max(int(mb * 1_000_000 * 2), 16 * 1024 * 1024)
    doc = {
        "source_id": "export",
        "ingestion": {
            "request": {"max_response_bytes": cap},
            "job": {
                "create": {"url": f"{origin}/jobs", "body": {"type": "contacts"}},
                "id_path": "id",
                "poll": {
                    "url": f"{origin}/jobs/{{job.id}}?mb={mb}",
                    "every_seconds": 0.1,
                    "timeout_seconds": 60,
                },
                "status_path": "status",
                "done": ["done"],
                "download": {"url_path": "urls", "credentials": False, "timeout_seconds": 3600},
            },
            "response": {"format": "csv"},
            "records": {"split": True},
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "export.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def peak_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run_once(origin: str, mb: float, dry_run: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="report-bench-") as tmp:
        folder = Path(tmp)
        write_config(folder / "configs", origin, mb)
        env = {
            **os.environ,
            "PULLCTL_CONFIG": str(folder / "configs"),
            "PULLCTL_STORE": f"sqlite:///{folder / 'store.db'}",
            "PULLCTL_LOG_FORMAT": "json",
        }
        out, err = folder / "stdout", folder / "stderr"
        mode = ["--dry-run", "--allow-jobs"] if dry_run else ["--output", "json"]
        printed = [0]
        start = time.perf_counter()
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pullctl", "run", "export", *mode],
                stdout=subprocess.PIPE if dry_run else stdout,
                stderr=stderr,
                env=env,
                cwd=ROOT,
            )
            reader = threading.Thread(target=_count_lines, args=(proc.stdout, printed), daemon=True)
            if dry_run:  # the documents printed, one JSON line each, counted as they come
                reader.start()
            peak = 0
            while proc.poll() is None:
                peak = max(peak, peak_kib(proc.pid) or 0)
                time.sleep(0.05)
            if dry_run:
                reader.join()
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(
                f"pullctl exited {proc.returncode}: {err.read_text()[-2000:]}{out.read_text()[-2000:]}"
            )
        if dry_run:  # the run_finished log line carries the counts; a dry run stores nothing
            finished = [
                json.loads(line) for line in err.read_text().splitlines() if '"run_finished"' in line
            ][-1]
            record = {**finished, "counts": {**finished["counts"], "stored": printed[0]}}
        else:
            record = json.loads(out.read_text().splitlines()[-1])
        db = folder / "store.db"
        db_mb = db.stat().st_size / 1e6 if db.exists() else 0.0
    return {"mb": mb, "record": record, "wall": wall, "peak_mb": peak / 1024, "db_mb": db_mb}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", default="50,500", help="export sizes in MB (decompressed), comma-separated")
    parser.add_argument("--plain", action="store_true", help="serve plain CSV, not gzip")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="pullctl run --dry-run --allow-jobs: documents to /dev/null, no store (the parse path's own rate)",
    )
    parser.add_argument("--role", default="bench", choices=["bench", "upstream"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "upstream":
        serve(args.plain)
        return
    sizes = [float(s) for s in args.mb.split(",") if s.strip()]
    cmd = [sys.executable, __file__, "--role", "upstream", *(["--plain"] if args.plain else [])]
    upstream = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert upstream.stdout is not None
        origin = f"http://127.0.0.1:{upstream.stdout.readline().strip()}"
        results = []
        for mb in sizes:
            result = run_once(origin, mb, args.dry_run)
            results.append(result)
            print(f"{mb:g} MB done in {result['wall']:.1f} s", file=sys.stderr, flush=True)
    finally:
        if upstream.stdin is not None:
            upstream.stdin.close()
        upstream.wait(10)
    kind = "plain CSV" if args.plain else "gzip CSV (level 1, compressed as served)"
    kind += ", --dry-run (no store)" if args.dry_run else ", SQLite store"
    print(
        f"report benchmark: a job's {kind} export streamed into split records; {os.cpu_count()} CPUs,"
        f" Python {sys.version.split()[0]}"
    )
    print(f"1-minute load average after: {os.getloadavg()[0]:.2f} (other work on the machine slows it)")
    print(
        f"{'export MB':>9}  {'rows out' if args.dry_run else 'rows stored':>11}  {'run s':>7}  {'rows/s run':>10}  {'rows/s wall':>11}  {'MB/s':>6}  {'peak RSS MB':>11}  {'store MB':>8}"
    )
    for r in results:
        rec = r["record"]
        stored, seconds = rec["counts"]["stored"], rec["duration_seconds"]
        print(
            f"{r['mb']:>9g}  {stored:>11,}  {seconds:>7.1f}  {stored / seconds:>10,.0f}  {stored / r['wall']:>11,.0f}"
            f"  {r['mb'] / seconds:>6.1f}  {r['peak_mb']:>11.1f}  {r['db_mb']:>8.0f}"
        )
        assert rec["status"] == "succeeded", rec


if __name__ == "__main__":
    main()

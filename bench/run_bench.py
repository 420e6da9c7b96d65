"""`pullctl run` throughput and memory against hand-written fetch loops (issue 3, Benchmark).

Not a test: it prints figures. The upstream runs in its own process (so it does not share the GIL with
the client) and serves ``GET /v1/forecast?region=NAME``: about 2 KB of forecast-shaped JSON, a pure
function of NAME. By default it is a minimal asyncio HTTP/1.1 server (keep-alive, Content-Length), so
that the client's cost dominates; ``--upstream aiohttp`` serves the same bodies with aiohttp.web. Every
variant runs in a fresh subprocess of its own, so its wall time includes interpreter start-up and
imports, and its peak RSS and CPU seconds are read from ``os.wait4`` for that one process:

    pullctl        ``python -m pullctl run bench-api --output json --concurrency C`` with PULLCTL_CONFIG (a
                   static list of N items in a temporary folder), PULLCTL_STORE (a fresh SQLite file per
                   run) and PULLCTL_LOG_FORMAT=json; it must exit 0 having stored N documents
    aiohttp        a minimal loop on raw aiohttp: a semaphore bounds the in-flight items; fetch, json.loads,
                   sha256 of the canonical JSON, SQLite inserts in batches of 200 (INSERT OR IGNORE on a
                   unique hash, one transaction per batch, WAL)
    httpx-default  the same loop on httpx.AsyncClient with its default transport (httpcore pool)
    httpx-aiohttp  the same loop on httpx.AsyncClient over httpx_aiohttp.AiohttpTransport (pullctl's
                   transport), to separate the transport's cost from pullctl's own

Figures are medians of ``--repeat`` runs (the variants are interleaved within each round); peak RSS is
the largest of the rounds. "items/s wall" is N over the process's wall time; "items/s loop" is N over
the time the fetch loop itself took (pullctl: the run record's duration_seconds); "items/CPU-s" is N over
the process's user + system CPU seconds, which a busy machine disturbs least. The targets are judged on
wall time. pullctl also runs at every ``--rss-items`` count (at the largest ``--concurrency``), and once
per count with ``--limit 1`` (it loads and plans every item but fetches one), to show whether peak RSS
grows with the item count and what of it the configured items themselves hold. ``--profile FILE`` adds
one pullctl run under cProfile and prints its own time by owner (package or pullctl module) per item,
then its top functions.

    .venv/bin/python bench/run_bench.py                                  # 10,000 items, concurrency 5 and 50
    .venv/bin/python bench/run_bench.py --items 2000 --repeat 3           # a quick round (~2 min)
    .venv/bin/python bench/run_bench.py --items 10000 --concurrency 50 --variants pullctl \\
        --rss-items "" --profile /tmp/pullctl.prof

Targets at concurrency 50: pullctl >= 0.7x raw aiohttp's items/s (wall), >= 0.9x with ``--latency-ms 20``
(issue 20), >= 3x httpx's default pool (issue 3); peak RSS < 250 MB for 10,000 items, flat with the item
count.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

SOURCE_ID = "bench-api"
BATCH = 200
LOOPS = ("aiohttp", "httpx-default", "httpx-aiohttp")
VARIANTS = ("pullctl", *LOOPS)
TIMEOUT = 900.0  # seconds, per subprocess
NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
HOURS = [f"2026-03-{1 + h // 24:02d}T{h % 24:02d}:00" for h in range(48)]


def region(i: int) -> str:
    return f"r{i:05d}"


# -- the upstream (its own process) ----------------------------------------------------------------------


def forecast(name: str) -> bytes:
    """About 2 KB of Open-Meteo-shaped JSON, a pure function of ``name`` (a template chosen by its crc32)."""
    prefix, suffix = _templates()[zlib.crc32(name.encode()) % len(_TEMPLATES)]
    return prefix + name.encode() + suffix


_TEMPLATES: list[tuple[bytes, bytes]] = []


def _templates(count: int = 64) -> list[tuple[bytes, bytes]]:
    """``count`` forecast bodies split around the region name, built once, so serving one costs ~1 us."""
    if not _TEMPLATES:
        for seed in (zlib.crc32(b"%d" % k) for k in range(count)):
            body = {
                "region": "\x00",
                "latitude": round((seed % 18000) / 100 - 90, 2),
                "longitude": round((seed // 7 % 36000) / 100 - 180, 2),
                "utc_offset_seconds": 0,
                "timezone": "GMT",
                "elevation": float(seed % 3000),
                "hourly_units": {
                    "time": "iso8601",
                    "temperature_2m": "°C",
                    "relative_humidity_2m": "%",
                    "precipitation": "mm",
                    "wind_speed_10m": "km/h",
                },
                "hourly": {
                    "time": HOURS,
                    "temperature_2m": [round((seed >> (h % 20)) % 400 / 10 - 10, 1) for h in range(48)],
                    "relative_humidity_2m": [(seed >> (h % 24)) % 100 for h in range(48)],
                    "precipitation": [round((seed >> (h % 12)) % 50 / 10, 1) for h in range(48)],
                    "wind_speed_10m": [round((seed >> (h % 18)) % 600 / 10, 1) for h in range(48)],
                },
            }
            text = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
            prefix, _, suffix = text.partition(b"\\u0000")
            _TEMPLATES.append((prefix, suffix))
    return _TEMPLATES


def route(target: bytes) -> tuple[int, bytes]:
    """The upstream's one endpoint: ``GET /v1/forecast?region=NAME`` -> (status, JSON body)."""
    path, _, query = target.partition(b"?")
    if path != b"/v1/forecast":
        return 404, b'{"error":true,"reason":"not found"}'
    name = dict(parse_qsl(query.decode())).get("region", "")
    if not NAME_RE.fullmatch(name):
        return 400, b'{"error":true,"reason":"region must match [A-Za-z0-9_-]{1,64}"}'
    return 200, forecast(name)


Router = Callable[[bytes], tuple[int, bytes]]  # request target -> (status, JSON body)


class MinimalHttp(asyncio.Protocol):
    """Just enough HTTP/1.1 for GET with keep-alive: the lightest upstream, so the client's cost dominates."""

    def __init__(self, router: Router = route, latency: float = 0.0) -> None:
        self.router = router
        self.latency = latency  # seconds before each answer (an API's own time), without blocking the loop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            parts = head.split(b"\r\n", 1)[0].split(b" ")
            if len(parts) == 3 and parts[0] == b"GET":
                status, body = self.router(parts[1])
            else:
                status, body = 405, b'{"error":true,"reason":"GET only"}'
            reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}[status]
            answer = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
                status,
                reason,
                len(body),
                body,
            )
            if self.latency:
                asyncio.get_running_loop().call_later(self.latency, self._answer, answer)
            else:
                self.transport.write(answer)

    def _answer(self, answer: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(answer)


def serve_upstream(kind: str, router: Router = route, latency_ms: float = 0.0) -> None:
    """Serve ``router`` on a free loopback port; print the port; stop on SIGTERM or when stdin closes.
    ``latency_ms``: each answer waits that long (the API's own time), as a real upstream's would."""
    latency = latency_ms / 1000

    async def main() -> None:
        _templates()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)

        def watch_parent() -> None:  # the parent died or closed our stdin: stop
            sys.stdin.read()
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch_parent, daemon=True).start()
        if kind == "raw":
            sock.listen(1024)
            server = await loop.create_server(lambda: MinimalHttp(router, latency), sock=sock)
            print(sock.getsockname()[1], flush=True)
            await stop.wait()
            server.close()
            return
        from aiohttp import web

        async def handle(request: web.Request) -> web.Response:
            if latency:
                await asyncio.sleep(latency)
            status, body = router(request.raw_path.encode())
            return web.Response(status=status, body=body, content_type="application/json")

        app = web.Application()
        app.router.add_get("/v1/forecast", handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock, backlog=1024).start()
        print(sock.getsockname()[1], flush=True)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


class UpstreamProcess:
    """``with UpstreamProcess(kind) as url:`` runs ``serve_upstream`` in a child process, always stopped.

    ``script``: the bench whose ``--role upstream`` serves (default this one); ``path``: what follows the
    origin in the URL it returns (default the forecast endpoint)."""

    def __init__(
        self, kind: str = "raw", script: str = __file__, path: str = "/v1/forecast", latency_ms: float = 0.0
    ) -> None:
        self.kind, self.script, self.path, self.latency_ms = kind, script, path, latency_ms

    def __enter__(self) -> str:
        latency = ["--latency-ms", str(self.latency_ms)] if self.latency_ms else []
        self.proc = subprocess.Popen(
            [sys.executable, self.script, "--role", "upstream", "--upstream", self.kind, *latency],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.__exit__()
            raise SystemExit(f"the upstream did not start (printed {line!r})")
        return f"http://127.0.0.1:{line}{self.path}"

    def __exit__(self, *exc_info: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


# -- the hand-written loops (each in its own process) ----------------------------------------------------

Fetch = Callable[[str], Awaitable[bytes]]


def open_db(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS docs (hash TEXT PRIMARY KEY, region TEXT NOT NULL,"
        " content BLOB NOT NULL, fetched_at REAL NOT NULL)"
    )
    return conn


async def fetch_loop(fetch: Fetch, items: int, concurrency: int, db: str) -> dict[str, Any]:
    conn = open_db(db)
    sem = asyncio.Semaphore(concurrency)
    batch: list[tuple[str, str, bytes, float]] = []
    failed: list[str] = []
    running: set[asyncio.Task[None]] = set()

    def flush() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR IGNORE INTO docs VALUES (?,?,?,?)", batch)
        conn.execute("COMMIT")
        batch.clear()

    async def one(name: str) -> None:
        try:
            body = await fetch(name)
            data = json.loads(body)
            canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            digest = hashlib.sha256(canonical.encode()).hexdigest()
            batch.append((digest, name, body, time.time()))
            if len(batch) >= BATCH:
                flush()
        except Exception as exc:
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
        finally:
            sem.release()

    t0 = time.perf_counter()
    for i in range(items):
        await sem.acquire()
        task = asyncio.create_task(one(region(i)))
        running.add(task)
        task.add_done_callback(running.discard)
    await asyncio.gather(*running)  # at most ``concurrency`` left
    if batch:
        flush()
    seconds = time.perf_counter() - t0
    stored = conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0]
    conn.close()
    return {"seconds": seconds, "stored": stored, "failed": len(failed), "errors": failed[:3]}


async def run_loop(client: str, url: str, items: int, concurrency: int, db: str) -> dict[str, Any]:
    if client == "aiohttp":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def fetch_aiohttp(name: str) -> bytes:
                async with session.get(url, params={"region": name}) as resp:
                    resp.raise_for_status()
                    return await resp.read()

            return await fetch_loop(fetch_aiohttp, items, concurrency, db)

    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    if client == "httpx-default":
        http = httpx.AsyncClient(limits=limits)
    else:
        from httpx_aiohttp import AiohttpTransport

        http = httpx.AsyncClient(transport=AiohttpTransport(limits=limits))
    async with http:

        async def fetch_httpx(name: str) -> bytes:
            resp = await http.get(url, params={"region": name})
            resp.raise_for_status()
            return resp.content

        return await fetch_loop(fetch_httpx, items, concurrency, db)


# -- measuring one subprocess ----------------------------------------------------------------------------


@dataclass
class Sample:
    wall: float
    loop: float
    rss_mb: float
    cpu: float  # user + system seconds of the client process


@dataclass
class Cell:
    variant: str
    concurrency: int
    items: int
    samples: list[Sample] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples)

    @property
    def per_second(self) -> float:
        return self.items / self.median("wall")

    @property
    def loop_per_second(self) -> float:
        return self.items / self.median("loop")

    @property
    def per_cpu_second(self) -> float:
        return self.items / self.median("cpu")

    @property
    def peak_rss(self) -> float:
        return max(s.rss_mb for s in self.samples)


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


@dataclass
class Measured:
    wall: float
    rss_mb: float
    cpu: float
    stdout: str


def measure(cmd: list[str], env: dict[str, str], workdir: Path) -> Measured:
    """Run ``cmd``: its wall seconds, its own peak RSS and CPU seconds (from wait4), its stdout. Exit 0 or raise."""
    out_path, err_path = workdir / "stdout", workdir / "stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=workdir)
        timer = threading.Timer(TIMEOUT, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout = out_path.read_text()
    if proc.returncode != 0:
        tail = err_path.read_text()[-2000:]
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}\n{tail}")
    # ru_maxrss is in KiB on Linux
    return Measured(wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, stdout)


def write_config(folder: Path, url: str, items: int) -> None:
    lines = [
        f"source_id: {SOURCE_ID}",
        "ingestion:",
        '  schedule: "0 * * * *"',
        "  request:",
        f"    base_url: {url}",
        "    parameters:",
        '      region: "{region.id}"',
        "  iteration:",
        "    foreach: region",
        "    key: id",
        "    items:",
        *(f"      - {{id: {region(i)}}}" for i in range(items)),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{SOURCE_ID}.yaml").write_text("\n".join(lines) + "\n")


def pullctl_cmd(concurrency: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pullctl",
        "run",
        SOURCE_ID,
        "--output",
        "json",
        "--concurrency",
        str(concurrency),
    ]


def run_pullctl(
    url: str, items: int, concurrency: int, tmp: Path, profile: str | None = None, limit: int | None = None
) -> Sample:
    """One ``pullctl run`` over ``items`` configured items (``limit``: fetch only the first ones)."""
    config = tmp / f"config-{items}"
    if not config.exists():
        write_config(config, url, items)
    cmd = pullctl_cmd(concurrency) + (["--limit", str(limit)] if limit else [])
    if profile:
        cmd[1:3] = [__file__, "--role", "profile", "--db", profile]
    return run_config(config, cmd, limit or items, tmp)[0]


def run_config(config: Path, cmd: list[str], stored: int, tmp: Path) -> tuple[Sample, dict[str, Any]]:
    """Run ``cmd`` (a ``pullctl run``) over the configs in ``config`` into a fresh SQLite file: its sample
    and run record. It must succeed having stored ``stored`` documents."""
    with tempfile.TemporaryDirectory(dir=tmp) as work:
        env = child_env()
        env.update(
            PULLCTL_CONFIG=str(config),
            PULLCTL_STORE=f"sqlite:///{Path(work) / 'store.db'}",
            PULLCTL_LOG_FORMAT="json",
        )
        m = measure(cmd, env, Path(work))
    record = json.loads(m.stdout.strip().splitlines()[-1])
    counts = record["counts"]
    if record["status"] != "succeeded" or counts["stored"] != stored:
        raise SystemExit(
            f"pullctl run: status {record['status']}, counts {counts}, errors {record['errors'][:3]}"
        )
    return Sample(m.wall, record["duration_seconds"], m.rss_mb, m.cpu), record


def run_hand_loop(variant: str, url: str, items: int, concurrency: int, tmp: Path) -> Sample:
    with tempfile.TemporaryDirectory(dir=tmp) as work:
        cmd = [sys.executable, __file__, "--role", "loop", "--client", variant, "--url", url]
        cmd += ["--items", str(items), "--concurrency", str(concurrency)]
        cmd += ["--db", str(Path(work) / "loop.db")]
        m = measure(cmd, child_env(), Path(work))
    result = json.loads(m.stdout)
    if result["stored"] != items or result["failed"]:
        raise SystemExit(f"{variant} loop: stored {result['stored']} of {items}; {result['errors']}")
    return Sample(m.wall, result["seconds"], m.rss_mb, m.cpu)


def sample(variant: str, url: str, items: int, concurrency: int, tmp: Path) -> Sample:
    if variant == "pullctl":
        return run_pullctl(url, items, concurrency, tmp)
    return run_hand_loop(variant, url, items, concurrency, tmp)


# -- the report ------------------------------------------------------------------------------------------


def profile_cli(out: str, argv: list[str]) -> None:
    """Run ``pullctl *argv`` under cProfile and write the stats to ``out``.

    The default (wall) clock: on a busy machine it charges preemption to whatever runs, roughly evenly;
    a CPU-time clock costs ~1 us per call and would inflate the many small calls instead.
    """
    import cProfile

    from pullctl.cli.main import main as pullctl_main

    sys.argv = ["pullctl", *argv]
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        pullctl_main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    finally:
        profiler.disable()
        profiler.dump_stats(out)


def owner(filename: str, function: str) -> str:
    """Who owns a profiled function: a pullctl module, an installed package, a stdlib module or a builtin."""
    if "site-packages/" in filename:
        return filename.split("site-packages/")[1].split("/")[0]
    if "/pullctl/" in filename:
        return "pullctl/" + filename.rsplit("/pullctl/", 1)[1]
    if filename == "~":
        return "builtin " + function.split(" of ")[0].strip("<>{}")
    stdlib = re.search(r"python3\.\d+/([^/]+)", filename)
    return "stdlib " + stdlib.group(1).removesuffix(".py") if stdlib else filename


def print_profile(path: str, items: int, top: int = 30) -> None:
    import pstats

    stats = pstats.Stats(path)
    by_owner: dict[str, float] = {}
    for (filename, _, function), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        key = owner(filename, function)
        by_owner[key] = by_owner.get(key, 0.0) + own
    total = sum(by_owner.values())
    print(f"\ncProfile of one pullctl run over {items} items ({path}): own time by owner")
    for key, own in sorted(by_owner.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {own:7.2f} s {100 * own / total:5.1f}% {own / items * 1e6:7.1f} us/item  {key}")
    print(f"\ntop {top} functions by own time:")
    stats.sort_stats("tottime").print_stats(top)
    print(f"top {top} functions by cumulative time:")
    stats.sort_stats("cumulative").print_stats(top)


def report(
    cells: dict[tuple[str, int, int], Cell],
    args: argparse.Namespace,
    body_size: int,
    load: list[float],
    baselines: dict[int, float],
) -> None:
    print()
    print(
        f"pullctl run benchmark: {args.items} items of {body_size} B JSON, {args.upstream} upstream in its own"
        f" process ({args.latency_ms:g} ms latency), medians of {args.repeat} run(s), {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print(f"1-minute load average before / after: {load[0]:.2f} / {load[1]:.2f}", end="")
    print("  (other work on the machine: compare the CPU columns)" if max(load) > 0.7 else "")
    header = (
        f"{'variant':<15}{'conc':>5}{'wall s':>8}{'items/s wall':>14}{'items/s loop':>14}"
        f"{'CPU s':>8}{'items/CPU-s':>13}{'peak RSS MB':>13}"
    )
    print(header)
    print("-" * len(header))
    for c in args.concurrency:
        for v in args.variants:
            cell = cells[v, c, args.items]
            print(
                f"{v:<15}{c:>5}{cell.median('wall'):>8.2f}{cell.per_second:>14,.0f}{cell.loop_per_second:>14,.0f}"
                f"{cell.median('cpu'):>8.2f}{cell.per_cpu_second:>13,.0f}{cell.peak_rss:>13.1f}"
            )
    if "pullctl" in args.variants:
        print()
        print("pullctl / other: items/s wall  [items/s loop, items per CPU-second]; targets apply at conc 50")
        for c in args.concurrency:
            mine = cells["pullctl", c, args.items]
            aiohttp_floor = 0.9 if args.latency_ms >= 20 else 0.7  # issue 20
            for other, target, floor in (
                ("aiohttp", f">= {aiohttp_floor}x (issue 20)", aiohttp_floor),
                ("httpx-default", ">= 3x", 3.0),
            ):
                if other not in args.variants:
                    continue
                theirs = cells[other, c, args.items]
                wall = mine.per_second / theirs.per_second
                loop = mine.loop_per_second / theirs.loop_per_second
                cpu = mine.per_cpu_second / theirs.per_cpu_second
                verdict = f"   target {target}: {'met' if wall >= floor else 'MISSED'}" if c == 50 else ""
                print(f"  conc {c:>3}  vs {other:<14}{wall:>6.2f}x  [{loop:.2f}x, {cpu:.2f}x]{verdict}")
    top = max(args.concurrency)
    rss = sorted((k for k in cells if k[0] == "pullctl" and k[1] == top), key=lambda k: k[2])
    if rss:
        print()
        print(f"pullctl peak RSS by item count (concurrency {top}; target < 250 MB at 10,000, flat)")
        print("  the same config run with --limit 1 (loads and plans every item, fetches one) shows what the")
        print("  configured items themselves cost; the difference is what fetching and storing them costs")
        print(f"  {'items':>7}{'run MB':>9}{'--limit 1 MB':>14}{'difference':>12}   runs, items/s wall")
        for key in rss:
            cell = cells[key]
            base = baselines.get(cell.items, float("nan"))
            print(
                f"  {cell.items:>7}{cell.peak_rss:>9.1f}{base:>14.1f}{cell.peak_rss - base:>12.1f}"
                f"   {len(cell.samples)}, {cell.per_second:,.0f}"
            )
        if len(rss) > 1:
            first, last = cells[rss[0]], cells[rss[-1]]
            span = (last.items - first.items) / 1000
            grow = (last.peak_rss - first.peak_rss) / span
            held = (baselines.get(last.items, 0) - baselines.get(first.items, 0)) / span
            print(f"  growth per 1,000 items: {grow:+.2f} MB in all, {held:+.2f} MB of it with --limit 1")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=10_000, help="items per run (default 10,000)")
    parser.add_argument(
        "--concurrency", type=int, action="append", help="in-flight items (repeatable; default 5 and 50)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per cell; the median is shown (default 3)"
    )
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {','.join(VARIANTS)}"
    )
    parser.add_argument(
        "--rss-items",
        default="2000,10000",
        help="pullctl item counts for the RSS-growth check at the largest concurrency (default 2000,10000)",
    )
    parser.add_argument("--rss-repeat", type=int, default=1, help="runs per RSS-growth count (default 1)")
    parser.add_argument(
        "--profile", metavar="FILE", help="also profile one pullctl run with cProfile into FILE"
    )
    parser.add_argument(
        "--upstream",
        choices=("raw", "aiohttp"),
        default="raw",
        help="raw: a minimal asyncio HTTP/1.1 server (default, the cheapest); aiohttp: aiohttp.web",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="the upstream waits this long before each answer, like a real API (default 0: the client's cost"
        " dominates)",
    )
    parser.add_argument(
        "--role", choices=("bench", "upstream", "loop", "profile"), default="bench", help=argparse.SUPPRESS
    )
    parser.add_argument("--client", choices=LOOPS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.role == "profile":  # pullctl's CLI under cProfile
        profile_cli(args.db, rest)
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")

    if args.role == "upstream":
        serve_upstream(args.upstream, latency_ms=args.latency_ms)
        return
    if args.role == "loop":
        concurrency = args.concurrency[0]
        print(json.dumps(asyncio.run(run_loop(args.client, args.url, args.items, concurrency, args.db))))
        return

    args.concurrency = args.concurrency or [5, 50]
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(sorted(unknown))}; known: {', '.join(VARIANTS)}")
    rss_items = sorted({int(n) for n in args.rss_items.split(",") if n.strip()} - {args.items})
    top = max(args.concurrency)
    cells: dict[tuple[str, int, int], Cell] = {}
    load = [os.getloadavg()[0]]
    baselines: dict[int, float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="pullctl-bench-") as tmp_name,
        UpstreamProcess(args.upstream, latency_ms=args.latency_ms) as url,
    ):
        tmp = Path(tmp_name)
        for rnd in range(1, args.repeat + 1):
            for c in args.concurrency:
                for v in args.variants:
                    cell = cells.setdefault((v, c, args.items), Cell(v, c, args.items))
                    s = sample(v, url, args.items, c, tmp)
                    cell.samples.append(s)
                    print(
                        f"round {rnd}/{args.repeat}  {v:<14} conc {c:>3}  {s.wall:6.2f} s wall"
                        f"  {s.loop:6.2f} s loop  {s.cpu:6.2f} s CPU  {s.rss_mb:6.1f} MB",
                        file=sys.stderr,
                        flush=True,
                    )
        if "pullctl" in args.variants:
            for n in sorted({*rss_items, args.items}):  # load + plan only: what the configured items cost
                baselines[n] = run_pullctl(url, n, top, tmp, limit=1).rss_mb
            for n in rss_items:
                cell = cells.setdefault(("pullctl", top, n), Cell("pullctl", top, n))
                for _ in range(args.rss_repeat):
                    s = sample("pullctl", url, n, top, tmp)
                    cell.samples.append(s)
                    print(
                        f"rss check  pullctl {n:>6} items conc {top:>3}  {s.wall:6.2f} s  {s.rss_mb:6.1f} MB",
                        file=sys.stderr,
                        flush=True,
                    )
        if args.profile:
            run_pullctl(url, args.items, top, tmp, profile=args.profile)
    load.append(os.getloadavg()[0])
    report(cells, args, len(forecast(region(0))), load, baselines)
    if args.profile:
        print_profile(args.profile, args.items)


if __name__ == "__main__":
    main()

"""`pullctl demo` end to end, non-interactively: what it prints, and what it leaves in its SQLite store."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from pullctl.demo import FLAKY_REGIONS, REGIONS, DemoPaths, run_demo
from tests.conftest import Cli


def _documents(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT source_id, linkage, content, request FROM raw_documents").fetchall()
    return [
        {"source_id": s, "linkage": json.loads(link), "content": json.loads(c), "request": json.loads(r)}
        for s, link, c, r in rows
    ]


def _runs(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT record FROM pull_runs ORDER BY started_at").fetchall()
    return [json.loads(r[0]) for r in rows]


def test_demo_stores_every_region_once_then_only_duplicates(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = cli("demo", "--dir", str(folder))
    assert result.exit_code == 0, result.stderr

    db = folder / "pullctl.db"
    docs = _documents(db)
    assert len(docs) == len(REGIONS) == 25
    assert {d["source_id"] for d in docs} == {"weather-api"}
    assert sorted(d["linkage"]["region_id"] for d in docs) == sorted(r["region_id"] for r in REGIONS)
    for doc in docs:  # the linkage is the MCP item; the content is that region's forecast
        region = next(r for r in REGIONS if r["region_id"] == doc["linkage"]["region_id"])
        assert doc["linkage"] == region
        assert (doc["content"]["latitude"], doc["content"]["longitude"]) == (
            region["latitude"],
            region["longitude"],
        )
        assert len(doc["content"]["hourly"]["temperature_2m"]) == 48
        assert doc["request"]["status"] == 200

    first, second = _runs(db)
    assert first["status"] == second["status"] == "succeeded"
    assert first["counts"]["items"] == second["counts"]["items"] == 25
    assert (first["counts"]["stored"], first["counts"]["duplicates"]) == (25, 0)
    assert (second["counts"]["stored"], second["counts"]["duplicates"]) == (0, 25)
    assert first["counts"]["retries"] == len(FLAKY_REGIONS) > 0  # each flaky region's 503 is retried once
    assert first["counts"]["requests"] == 25 + len(FLAKY_REGIONS)
    assert second["counts"]["retries"] == 0

    config = (folder / "configs" / "weather-api.yaml").read_text()
    assert "source_id: weather-api" in config and "base_url: http://127.0.0.1:" in config

    # stdout: three stored documents with their linkage, in region order
    first_three = sorted(r["region_id"] for r in REGIONS)[:3]
    headings = [line.split()[0] for line in result.stdout.splitlines() if line and not line.startswith(" ")]
    assert headings == first_three
    br = next(r for r in REGIONS if r["region_id"] == first_three[0])
    assert f"  linkage   {json.dumps(br)}" in result.stdout

    # stderr: the flow, both summaries, and what to try next
    err = result.stderr
    assert "1/2 first run" in err and "2/2 second run" in err
    assert "25 stored · 0 duplicates" in err and "0 stored · 25 duplicates" in err
    assert "2 retries" in err
    for step in (
        f"pullctl runs --store sqlite:///{db}",
        "pullctl render weather-api",
        "pullctl validate",
        "pullctl demo --keep",
    ):
        assert f"  {step} " in err, step


def test_the_demo_source_is_valid(cli: Cli, tmp_path: Path) -> None:
    paths = DemoPaths(tmp_path)
    paths.reset("http://127.0.0.1:9/v1/forecast")
    result = cli("validate", str(paths.config_dir))
    assert result.exit_code == 0, result.stdout + result.stderr


def test_reset_wipes_only_the_store_and_the_demo_config(tmp_path: Path) -> None:
    paths = DemoPaths(tmp_path)
    for name in ("pullctl.db", "pullctl.db-wal", "pullctl.db-shm", "notes.txt"):
        (tmp_path / name).write_text("old")
    paths.reset("http://127.0.0.1:9/v1/forecast")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["configs", "notes.txt"]
    assert "base_url: http://127.0.0.1:9/v1/forecast\n" in paths.config_file.read_text()


def test_keep_holds_the_servers_until_ctrl_c(tmp_path: Path) -> None:
    import httpx

    seen: list[int] = []

    def explore() -> None:  # what a person does while --keep holds the servers up, then Ctrl-C
        config = DemoPaths(tmp_path).config_file.read_text()
        base_url = next(line.split()[1] for line in config.splitlines() if "base_url:" in line)
        seen.append(httpx.get(base_url, params={"latitude": 1, "longitude": 2}).status_code)
        raise KeyboardInterrupt

    result = run_demo(tmp_path, keep=True, wait=explore)
    assert seen == [200]
    assert [r.status for r in result.records] == ["succeeded", "succeeded"]
    assert len(result.documents) == 3 and result.stored == 25


def test_ctrl_c_stops_the_demo_without_a_traceback(tmp_path: Path) -> None:
    # A real SIGINT, whatever the disposition this test process inherited.
    script = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from pullctl.cli.main import main; main()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "demo", "--dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:  # interrupt as soon as the first run starts
        lines.append(line)
        if line.startswith("1/2 first run"):
            proc.send_signal(signal.SIGINT)
            break
    out, rest = proc.communicate(timeout=30)
    err = "".join(lines) + rest
    assert proc.returncode == 130, err
    assert "interrupted: the demo servers are stopped" in err
    assert "Traceback" not in err and "Error" not in err
    assert out == ""

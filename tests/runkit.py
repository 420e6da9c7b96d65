"""Helpers for run tests: write a source config pointing at the test servers and run `pullctl` on it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import Cli


def write_source(folder: Path, source_id: str = "weather-api", **ingestion: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"source_id": source_id, "ingestion": {"schedule": "0 6 * * *", **ingestion}}
    path = folder / f"{source_id}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


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

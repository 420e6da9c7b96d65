"""With PULLCTL_LOG_FORMAT=json every line on stderr is one JSON object: pullctl's own warnings, third-party
log records (the OpenTelemetry exporter's retries, uvicorn) and fatal `error:` lines alike."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pullctl.pipeline.documents import RunRecord
from pullctl.pipeline.metrics import export_run_metrics
from tests.runkit import write_source
from tests.servers.upstream import Upstream


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed): a connection there is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every stderr line parsed as a JSON object; fails naming the first line that is not one."""
    lines = []
    for line in stderr.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line on stderr: {line!r}\n--- stderr ---\n{stderr}")
        assert isinstance(parsed, dict), line
        assert {"ts", "level", "event"} <= parsed.keys(), line
        lines.append(parsed)
    return lines


def pullctl(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PULLCTL_"))},
        "PULLCTL_CONFIG": str(tmp_path / "configs"),
        "PULLCTL_STORE": f"sqlite:///{tmp_path / 'store.db'}",
        "PULLCTL_LOG_FORMAT": "json",
        "DAPR_HTTP_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
        **env,
    }
    cmd = [sys.executable, "-m", "pullctl", *args]
    return subprocess.run(cmd, env=environ, cwd=tmp_path, capture_output=True, text=True, timeout=60)


def spot_source(tmp_path: Path, upstream: Upstream, **request: Any) -> None:
    write_source(
        tmp_path / "configs",
        "spots",
        request={
            "base_url": f"{upstream.url}/v1/forecast",
            "parameters": {"latitude": "{spot.lat}", "longitude": "0"},
            **request,
        },
        iteration={"foreach": "spot", "items": [{"id": "a", "lat": 1.0}], "key": "id"},
    )


def test_an_unreachable_collector_is_one_json_warning_among_json_lines(
    tmp_path: Path, upstream: Upstream
) -> None:
    spot_source(tmp_path, upstream)
    endpoint = f"http://127.0.0.1:{closed_port()}"
    result = pullctl(tmp_path, "run", "spots", OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
    assert result.returncode == 0, result.stderr
    lines = json_lines(result.stderr)
    [warning] = [line for line in lines if line.get("event") == "metrics_not_sent"]
    assert warning["level"] == "warning"
    assert warning["message"] == f"run metrics could not be sent to {endpoint}"
    assert [line["event"] for line in lines if line.get("logger", "").startswith("pullctl")] == [
        "metrics_not_sent"
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"PULLCTL_STORE": "redis://user:hunter2@cache:6379/0"},
            "unknown store 'redis://user:***@cache:6379/0': use sqlite:///path/to/file.db or mongodb://host/",
        ),
        ({}, "no source 'nope'"),
    ],
    ids=["unknown-store-scheme", "unknown-source"],
)
def test_a_fatal_error_is_a_json_line(
    tmp_path: Path, upstream: Upstream, env: dict[str, str], message: str
) -> None:
    spot_source(tmp_path, upstream)
    source = "nope" if not env else "spots"
    result = pullctl(tmp_path, "run", source, **env)
    assert result.returncode == 2, result.stderr
    [line] = json_lines(result.stderr)
    assert (line["level"], line["event"], line["exit_code"]) == ("error", "fatal_error", 2)
    assert line["message"].startswith(message)
    assert "hunter2" not in result.stderr


def test_a_missing_secret_fails_the_run_with_json_lines_only(tmp_path: Path, upstream: Upstream) -> None:
    spot_source(tmp_path, upstream, auth_type="bearer", secret_store="vault", secret_key="token")
    result = pullctl(tmp_path, "run", "spots")
    assert result.returncode == 1, result.stderr
    lines = json_lines(result.stderr)
    assert lines[-1]["event"] == "run_finished" and lines[-1]["status"] == "failed"
    assert "PULLCTL_SECRET_VAULT_TOKEN" in lines[-1]["message"]


def test_a_replay_with_nothing_to_replay_says_so_in_json(tmp_path: Path, upstream: Upstream) -> None:
    spot_source(tmp_path, upstream)
    first = pullctl(tmp_path, "run", "spots", "--output", "json")
    assert first.returncode == 0, first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    replay = pullctl(tmp_path, "run", "spots", "--replay", run_id)
    assert replay.returncode == 0, replay.stderr
    [line] = json_lines(replay.stderr)
    assert (line["level"], line["message"]) == (
        "info",
        f"run {run_id} has no failed items: nothing to replay",
    )


def test_serve_logs_pullctl_and_library_records_as_json_lines() -> None:
    probe = (
        "import logging, logging.config; from pullctl.logs import uvicorn_log_config;"
        " logging.config.dictConfig(uvicorn_log_config());"
        " logging.getLogger('uvicorn.error').info('Uvicorn running');"
        " logging.getLogger('pullctl').warning('run metrics could not be sent', extra={'event': 'metrics_not_sent'});"
        " logging.getLogger('opentelemetry.exporter.otlp.common.http').error('Failed to export metrics batch');"
        " logging.getLogger('asyncio').error('Task exception was never retrieved')"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True
    )
    lines = json_lines(result.stderr)
    assert [(line["logger"], line["level"], line["event"]) for line in lines] == [
        ("uvicorn.error", "info", "server"),
        ("pullctl", "warning", "metrics_not_sent"),
        ("opentelemetry.exporter.otlp.common.http", "error", "log"),
        ("asyncio", "error", "log"),
    ]


def test_an_unreachable_collector_costs_about_two_seconds_not_seven(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)  # the exporter reads it from os.environ
    record = RunRecord("r1", "spots", "schedule", {})
    started = time.monotonic()
    warning = export_run_metrics(record, endpoint)
    elapsed = time.monotonic() - started
    assert warning == f"run metrics could not be sent to {endpoint}"
    assert elapsed < 5, f"the export took {elapsed:.1f} s"

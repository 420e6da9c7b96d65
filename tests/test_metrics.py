"""Run metrics reach an OTLP/HTTP receiver (a real ASGI app decoding the protobuf export request)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pullctl.asgi import serve_in_thread
from tests.conftest import Cli
from tests.runkit import Runner, weather, write_source
from tests.servers.mcp_server import McpTestServer
from tests.servers.upstream import Upstream


def _points(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    request = ExportMetricsServiceRequest()
    request.ParseFromString(body)
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                data: Any = metric.sum if metric.HasField("sum") else metric.histogram
                for p in data.data_points:
                    attrs = tuple(sorted((a.key, a.value.string_value) for a in p.attributes))
                    out[(metric.name, attrs)] = p.as_int if metric.HasField("sum") else p.count
    return out


def test_run_metrics_are_exported(
    cli: Cli, tmp_path: Path, upstream: Upstream, mcp_server: McpTestServer
) -> None:
    bodies: list[bytes] = []

    async def receive(request: Request) -> Response:
        bodies.append(await request.body())
        return Response(status_code=200, media_type="application/x-protobuf")

    with serve_in_thread(Starlette(routes=[Route("/v1/metrics", receive, methods=["POST"])])) as otlp:
        runner = Runner(
            cli,
            tmp_path,
            {"PULLCTL_MCP_URL_PLANTATION_MCP": mcp_server.url, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url},
        )
        write_source(runner.config, **weather(upstream.url))
        code, _, _ = runner.run_json("weather-api")
    assert code == 0 and len(bodies) == 1
    points = _points(bodies[0])
    base = (("source_id", "weather-api"), ("status", "succeeded"), ("trigger", "manual"))
    assert points[("pullctl.runs", base)] == 1
    assert points[("pullctl.documents", tuple(sorted((*base, ("result", "stored")))))] == 5
    assert points[("pullctl.items", tuple(sorted((*base, ("outcome", "fetched")))))] == 5
    assert points[("pullctl.requests", tuple(sorted((*base, ("retry", "false")))))] == 5
    assert points[("pullctl.run.duration", base)] == 1


def test_nothing_is_imported_without_the_endpoint() -> None:
    probe = (
        "import sys; from pullctl.pipeline.documents import RunRecord; from pullctl.pipeline.metrics import"
        " export_run_metrics as e; print(e(RunRecord('r','s','manual',{}), None), 'opentelemetry' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "None False"

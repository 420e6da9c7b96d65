"""manifests/monitoring/: every metric and label the Grafana dashboard and the Prometheus rules use is one that
pullctl exports (captured from a real OTLP export, then named as the Collector's Prometheus exporter names
it), and the Collector config wires OTLP to that exporter."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pullctl.asgi import serve_in_thread
from pullctl.pipeline.documents import RunRecord
from pullctl.pipeline.metrics import export_run_metrics
from tests.conftest import ROOT

MONITORING = ROOT / "manifests" / "monitoring"
SCRAPE_LABELS = {"job", "instance"}  # added by the exporter and the scrape, on every series


@dataclass
class Exported:
    """One Prometheus metric name with the labels (and the values seen of each) pullctl sends for it."""

    labels: dict[str, set[str]] = field(default_factory=dict)


def _prometheus_names(name: str, unit: str, histogram: bool) -> list[str]:
    """What the Collector's prometheus exporter (add_metric_suffixes) calls an OTLP metric."""
    base = name.replace(".", "_")
    if unit == "s":
        base += "_seconds"
    if histogram:
        return [f"{base}_bucket", f"{base}_sum", f"{base}_count"]
    return [f"{base}_total"]


@pytest.fixture(scope="module")
def exported() -> dict[str, Exported]:
    """The metrics of three real exports (a succeeded, a partial and a failed run), by Prometheus name."""
    bodies: list[bytes] = []

    async def receive(request: Request) -> Response:
        bodies.append(await request.body())
        return Response(status_code=200, media_type="application/x-protobuf")

    app = Starlette(routes=[Route("/v1/metrics", receive, methods=["POST"])])
    with serve_in_thread(app) as otlp, pytest.MonkeyPatch.context() as env:
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.url)  # the exporter reads it from the environment
        for status, trigger in (("succeeded", "schedule"), ("partial", "manual"), ("failed", "backfill")):
            record = RunRecord(f"run-{status}", "weather-api", trigger, {}, status=status)
            record.counts.update(
                requests=3, retries=1, fetched=1, failed=1, skipped=1, stored=1, duplicates=1
            )
            record.events = {"sent": 1, "pending": 1}
            assert export_run_metrics(record, {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url}) is None
    out: dict[str, Exported] = {}
    for body in bodies:
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    histogram = metric.HasField("histogram")
                    data: Any = metric.histogram if histogram else metric.sum
                    # one run's counts per export: the Collector's deltatocumulative sums them
                    assert (
                        data.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
                    )
                    for name in _prometheus_names(metric.name, metric.unit, histogram):
                        entry = out.setdefault(name, Exported())
                        for point in data.data_points:
                            for attr in point.attributes:
                                entry.labels.setdefault(attr.key, set()).add(attr.value.string_value)
                        if name.endswith("_bucket"):
                            entry.labels.setdefault("le", set())
    return out


def _dashboard_queries() -> Iterator[tuple[str, str]]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield f"dashboard panel '{panel['title']}'", target["expr"]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            yield f"dashboard variable '{variable['name']}'", query["query"]


def _embedded(file: str, key: str) -> Any:
    """The file a ConfigMap of manifests/monitoring/ holds under ``key``, parsed."""
    config_map = yaml.safe_load((MONITORING / file).read_text())
    assert config_map["kind"] == "ConfigMap"
    return yaml.safe_load(config_map["data"][key])


def _rules() -> list[dict[str, Any]]:
    rules = _embedded("prometheus-rules.yaml", "pullctl.rules.yaml")
    return [rule for group in rules["groups"] for rule in group["rules"]]


def _queries() -> list[tuple[str, str]]:
    return [*_dashboard_queries(), *((f"rule {r['alert']}", r["expr"]) for r in _rules())]


METRIC = re.compile(r"\b(pullctl_[a-z0-9_]+)\b")
SELECTOR = re.compile(r"\b(pullctl_[a-z0-9_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"\s*')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
LABEL_VALUES = re.compile(r"label_values\(\s*(pullctl_[a-z0-9_]+)\s*,\s*([a-zA-Z_]+)\s*\)")


def test_every_metric_and_label_used_is_exported(exported: dict[str, Exported]) -> None:
    queries = _queries()
    assert len(queries) >= 10
    used_metrics: set[str] = set()
    for where, expr in queries:
        names = set(METRIC.findall(expr))
        assert names, f"{where}: no pullctl metric in {expr!r}"
        unknown = names - set(exported)
        assert not unknown, f"{where}: {sorted(unknown)} not exported (exported: {sorted(exported)})"
        used_metrics |= names
        for name, body in SELECTOR.findall(expr):
            labels = exported[name].labels
            for matcher in filter(str.strip, body.split(",")):
                parsed = MATCHER.fullmatch(matcher)
                assert parsed, f"{where}: cannot read the matcher {matcher!r}"
                key, op, value = parsed.groups()
                assert key in labels, f"{where}: {name} has no label '{key}' (labels: {sorted(labels)})"
                if op in ("=", "!="):
                    assert value in labels[key], f"{where}: {name}{{{key}}} is never '{value}': {labels[key]}"
        allowed = set().union(*(set(exported[n].labels) for n in names)) | SCRAPE_LABELS
        for grouping in GROUPING.findall(expr):
            for label in filter(None, (g.strip() for g in grouping.split(","))):
                assert label in allowed, f"{where}: grouping by '{label}', which {sorted(names)} lack"
        for name, label in LABEL_VALUES.findall(expr):
            assert label in exported[name].labels, f"{where}: label_values of '{label}', which {name} lacks"
    # the dashboard shows every kind of metric pullctl sends
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used_metrics}
    assert families == {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in exported}


def test_alert_annotations_name_only_labels_the_rule_keeps() -> None:
    for rule in _rules():
        kept = {label.strip() for g in GROUPING.findall(rule["expr"]) for label in g.split(",")}
        text = " ".join(rule["annotations"].values())
        for label in re.findall(r"\$labels\.([a-zA-Z_]+)", text):
            assert label in kept, (
                f"rule {rule['alert']}: its annotations use $labels.{label}, lost by the sum"
            )
        assert rule["labels"]["severity"] in ("page", "ticket")


def test_the_collector_turns_otlp_into_prometheus_metrics() -> None:
    config = _embedded("otel-collector.yaml", "config.yaml")
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["http"]["endpoint"].endswith(":4318") and protocols["grpc"]["endpoint"].endswith(":4317")
    prometheus = config["exporters"]["prometheus"]
    assert prometheus["endpoint"].endswith(":8889")
    assert prometheus["add_metric_suffixes"] is True  # the names the dashboard and rules use
    pipeline = config["service"]["pipelines"]["metrics"]
    assert pipeline["receivers"] == ["otlp"] and pipeline["exporters"] == ["prometheus"]
    assert "deltatocumulative" in pipeline["processors"]  # pullctl sends one run's counts per export
    for kind in ("receivers", "processors", "exporters"):
        for name in pipeline[kind]:
            assert name in config[kind], (
                f"the metrics pipeline names {kind[:-1]} '{name}', which is not defined"
            )
    assert set(config["service"].get("extensions", [])) <= set(config.get("extensions", {}))

"""Run metrics exported with OpenTelemetry (OTLP over HTTP) when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

An optional extra (``pip install 'pullctl[otel]'``): nothing is imported when the variable is unset. The
exporter reads the standard ``OTEL_EXPORTER_OTLP_*`` variables itself (endpoint, headers), except the timeout:
an export takes at most ``EXPORT_TIMEOUT_SECONDS`` in all, retries included. The exporter retries within its
timeout (backoff 1 s, 2 s, 4 s, ... while the next wait still fits) and its default, 10 s, made an unreachable
collector cost every run about 7 s. Its own log records ("Transient error ..., retrying") reach the root
logger's handler, so with ``PULLCTL_LOG_FORMAT=json`` they are JSON lines too (``pullctl.logs``).
Metrics, each with the attributes ``source_id``, ``trigger`` and ``status`` of the run:

    pullctl.runs                    runs finished
    pullctl.run.duration            seconds (histogram)
    pullctl.requests                HTTP requests made, with ``retry`` = true|false
    pullctl.items                   items, with ``outcome`` = fetched|failed|skipped
    pullctl.documents               documents, with ``result`` = stored|duplicate
    pullctl.events                  events, with ``state`` = sent|pending
"""

from __future__ import annotations

from pullctl.pipeline.documents import RunRecord

EXPORT_TIMEOUT_SECONDS = 2.0  # the whole export: every attempt and every backoff wait (one retry at most)


def export_run_metrics(record: RunRecord, endpoint: str | None) -> str | None:
    """Export one finished run's metrics to ``endpoint`` (``OTEL_EXPORTER_OTLP_ENDPOINT``, which the exporter
    reads itself too); a warning text when they could not be sent, else None (also when ``endpoint`` is)."""
    if not endpoint:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
        from opentelemetry.sdk.resources import Resource
    except ImportError:
        return "OTEL_EXPORTER_OTLP_ENDPOINT is set but the otel extra is missing: pip install 'pullctl[otel]'"
    reader = InMemoryMetricReader()  # collected once, exported once: a run is one batch
    provider = MeterProvider(resource=Resource.create({"service.name": "pullctl"}), metric_readers=[reader])
    meter = provider.get_meter("pullctl")
    base = {"source_id": record.source_id, "trigger": record.trigger, "status": record.status}
    c, ev = record.counts, record.events
    meter.create_counter("pullctl.runs", unit="{run}").add(1, base)
    meter.create_histogram("pullctl.run.duration", unit="s").record(record.duration_seconds or 0.0, base)
    requests = meter.create_counter("pullctl.requests", unit="{request}")
    requests.add(c["requests"] - c["retries"], {**base, "retry": "false"})
    requests.add(c["retries"], {**base, "retry": "true"})
    items = meter.create_counter("pullctl.items", unit="{item}")
    for outcome in ("fetched", "failed", "skipped"):
        items.add(c[outcome], {**base, "outcome": outcome})
    documents = meter.create_counter("pullctl.documents", unit="{document}")
    documents.add(c["stored"], {**base, "result": "stored"})
    documents.add(c["duplicates"], {**base, "result": "duplicate"})
    events = meter.create_counter("pullctl.events", unit="{event}")
    for state in ("sent", "pending"):
        events.add(ev[state], {**base, "state": state})
    exporter = OTLPMetricExporter(timeout=EXPORT_TIMEOUT_SECONDS)
    try:
        data = reader.get_metrics_data()
        result = exporter.export(data) if data is not None else MetricExportResult.SUCCESS
    finally:
        exporter.shutdown()
        provider.shutdown()
    if result is MetricExportResult.SUCCESS:
        return None
    return f"run metrics could not be sent to {endpoint}"

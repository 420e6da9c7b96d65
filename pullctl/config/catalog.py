"""What `pullctl list` shows of each source: pure functions over loaded configs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pullctl.config.loader import LoadedSource
from pullctl.config.models import SourceConfig
from pullctl.config.schedule import parse_schedule, parse_timezone


def next_runs(config: SourceConfig, now: datetime, count: int = 3) -> list[datetime]:
    ing = config.ingestion
    if ing.mode != "scheduled_pull" or not ing.schedule or not config.enabled:
        return []
    return parse_schedule(ing.schedule, "dapr").ticks(now, parse_timezone(ing.timezone), count)


def iteration_summary(config: SourceConfig) -> str:
    it = config.ingestion.iteration
    if it is None:
        return "single fetch"
    if it.items is not None:
        return f"{it.foreach} in {len(it.items)} static items"
    if it.from_source is not None:
        return f"{it.foreach} in the records of {it.from_source}"
    server = it.mcp_url or it.source_mcp
    return f"{it.foreach} from {server} {it.source_tool}"


def source_summary(src: LoadedSource, now: datetime) -> dict[str, Any]:
    cfg = src.config
    ing = cfg.ingestion
    return {
        "source_id": cfg.source_id,
        "display_name": cfg.display_name,
        "mode": ing.mode,
        "schedule": ing.schedule,
        "timezone": ing.timezone or "Etc/UTC",
        "next_runs": [t.astimezone(UTC).isoformat() for t in next_runs(cfg, now)],
        "iteration": iteration_summary(cfg),
        "auth_type": ing.request.auth_type if ing.request else None,
        "enabled": cfg.enabled,
        "file": src.file,
        "config_hash": src.config_hash,
    }

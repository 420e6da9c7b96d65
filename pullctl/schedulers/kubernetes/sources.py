"""Loading the sources to render, and ``render_configs`` (load + render: what ``pullctl render`` calls)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pullctl.config.source import Scheduled
from pullctl.schedulers.kubernetes.options import RenderOptions
from pullctl.schedulers.kubernetes.render import render

Obj = dict[str, Any]


def load_sources(location: str, only: Sequence[str] = (), database: str = "pullctl") -> Scheduled:
    """The ``scheduled_pull`` sources at ``location`` (all of them, or those named in ``only``), sorted by id.
    ``database`` is the MongoDB database when ``location`` is a ``mongodb://`` URL.

    Configs are validated for Kubernetes (``target="k8s"``, from files and from MongoDB alike): a schedule
    only DAPR understands is a located ``ConfigError`` that points at ``pullctl jobs sync``.
    """
    from pullctl.pipeline.config_store import open_config_source

    return open_config_source(location, database).scheduled("k8s", only=only)


def render_configs(
    location: str,
    options: RenderOptions,
    only: Sequence[str] = (),
    database: str = "pullctl",
    on_note: Callable[[str], None] | None = None,
) -> list[Obj]:
    """Load the configs at ``location`` and render all scheduled sources, or those in ``only``; ``on_note``
    hears which sources were skipped (no schedule)."""
    sources = load_sources(location, only, database)
    note(sources, on_note)
    return render(sources, options)


def note(sources: Scheduled, on_note: Callable[[str], None] | None) -> None:
    for text in sources.notes():
        if on_note is not None:
            on_note(text)

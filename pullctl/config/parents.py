"""``iteration.from_source`` across sources: the parent exists and can run, no cycle, a bounded chain, and a
child's templates name only its own and its ancestors' items.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from difflib import get_close_matches

from pullctl.config.loaded import LoadedSource, LoadResult
from pullctl.errors import Issue

MAX_CHAIN = 4  # sources in a parent/child chain, the child included (teams -> channels -> messages: 3)
CROSS_CHECKED = (
    "iteration.from_source",
    "iteration.foreach",
    "request.base_url",
    "request.parameters",
    "request.headers",
    "request.body",
    "request.graphql.variables",
    "iteration.linkage",
)


def check_parents(result: LoadResult) -> None:
    """``iteration.from_source`` across files: the parent exists and can run, no cycle, at most ``MAX_CHAIN``
    deep; and a child's templates name only its own item, its ancestors' items and the built-ins.
    A source with such an error is dropped from ``sources`` (it cannot run)."""
    by_id = {s.source_id: s for s in result.sources}
    checked: list[LoadedSource] = []
    for src in result.sources:
        problem, chain = _chain(src, by_id, dict(result.invalid))
        ancestors = [p.config.ingestion.iteration.foreach for p in chain if p.config.ingestion.iteration]
        if problem is None:
            problem = _template_problem(src, ancestors)
        if problem is not None:
            where, message = problem
            line, col = src.at(f"ingestion.{where}")
            result.issues.append(Issue(src.file, line, col, f"ingestion.{where}", message))
            result.invalid[src.source_id] = src.file
            continue
        checked.append(dataclasses.replace(src, parents=tuple(chain)) if chain else src)
    result.sources = checked


def _chain(
    src: LoadedSource, by_id: Mapping[str, LoadedSource], invalid: Mapping[str, str]
) -> tuple[tuple[str, str] | None, list[LoadedSource]]:
    """(problem, the parent chain nearest first) of ``src``."""
    where = "iteration.from_source"
    path = [src.source_id]
    ancestors: list[LoadedSource] = []
    current = src
    while (parent_id := current.config.ingestion.parent) is not None:
        if parent_id in path:
            cycle = " -> ".join([*path, parent_id])
            return (where, f"the sources form a cycle: {cycle}"), ancestors
        parent = by_id.get(parent_id)
        if parent is None and parent_id in invalid:
            return (
                where,
                f"source '{parent_id}' is invalid (see its errors in {invalid[parent_id]})",
            ), ancestors
        if parent is None:
            hint = get_close_matches(parent_id, list(by_id), n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
            return (where, f"no source '{parent_id}' in the configs{suggestion}"), ancestors
        if not parent.config.is_scheduled_pull:
            return (
                where,
                f"source '{parent_id}' has mode {parent.config.ingestion.mode}: it fetches nothing",
            ), ancestors
        path.append(parent_id)
        if len(path) > MAX_CHAIN:
            return (where, f"the chain {' -> '.join(path)} is deeper than {MAX_CHAIN} sources"), ancestors
        ancestors.append(parent)
        current = parent
    return None, ancestors


def _template_problem(src: LoadedSource, ancestors: list[str]) -> tuple[str, str] | None:
    ing = src.config.ingestion
    if ing.parent is None or not src.config.is_scheduled_pull:
        return None
    own = ing.iteration.foreach if ing.iteration else None
    if own in ancestors:
        return "iteration.foreach", f"'{own}' is also an ancestor's foreach name; pick another name"
    return ing.template_problem(ancestors)

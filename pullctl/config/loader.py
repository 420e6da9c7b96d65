"""YAML source configs -> ``SourceConfig`` models, with every problem located at ``file:line:col``.

A file holds one source, a mapping with ``sources:`` (a list of sources), or several YAML documents
(``---``) of either kind. Folders are walked for ``*.yaml`` / ``*.yml`` in sorted order. Every problem
of every file is collected in one pass; nothing stops at the first.

These are the primitives: ``load_text`` (one text, pure), ``read_files`` (paths -> ``ConfigEntry``),
``load_entries`` (entries -> ``LoadResult``, duplicate ids checked) and ``load_paths`` (the two together).
Commands do not call them: they go through ``pullctl.config.source.ConfigSource``, which reads files or the
MongoDB config store with the same messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pullctl.config.loaded import LoadedSource, LoadResult
from pullctl.config.models import KNOWN_TOP_LEVEL, SourceConfig, config_hash
from pullctl.config.parents import CROSS_CHECKED, check_parents
from pullctl.config.schedule import Target
from pullctl.config.schema_issues import template_issues, validation_issues
from pullctl.config.yaml_reader import (
    Loc,
    Positions,
    documents,
    format_loc,
    summary,
)
from pullctl.errors import ConfigError, Issue


def _source_entries(
    doc: Any, pos: Positions, file: str, issues: list[Issue]
) -> list[tuple[Loc, dict[str, Any]]]:
    if doc is None:
        return []
    expected = "expected a source config (a mapping with source_id and ingestion) or a 'sources:' list"
    if not isinstance(doc, dict):
        line, col = pos.of_value(())
        issues.append(Issue(file, line, col, "", f"{expected}, got {summary(doc)}"))
        return []
    if "sources" not in doc:
        return [((), doc)]
    if set(doc) != {"sources"}:
        others = sorted(set(doc) - {"sources"})
        line, col = pos.of_key((others[0],)) or pos.of_value((others[0],))
        issues.append(
            Issue(file, line, col, others[0], "a file with 'sources:' holds nothing else at the top level")
        )
        return []
    entries = doc["sources"]
    if not isinstance(entries, list):
        line, col = pos.of_value(("sources",))
        issues.append(
            Issue(
                file,
                line,
                col,
                "sources",
                f"must be a list of source configs (got {summary(entries)})",
            )
        )
        return []
    out: list[tuple[Loc, dict[str, Any]]] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, dict):
            out.append((("sources", i), entry))
        else:
            line, col = pos.of_value(("sources", i))
            issues.append(Issue(file, line, col, f"sources[{i}]", f"{expected}, got {summary(entry)}"))
    return out


def load_text(text: str, file: str, *, target: Target = "k8s", strict: bool = False) -> LoadResult:
    """Parse and validate one file's text. Pure: no I/O."""
    result = LoadResult(files=1)
    docs = documents(text, file, result.issues)
    for doc, doc_pos in docs:
        for prefix, raw in _source_entries(doc, doc_pos, file, result.issues):
            pos = doc_pos.under(prefix)
            refused = False
            for name in sorted(set(raw) - set(KNOWN_TOP_LEVEL)):
                hint = get_close_matches(name, KNOWN_TOP_LEVEL, n=1, cutoff=0.75)
                line, col = pos.of_key((name,)) or pos.of_value((name,))
                if hint:
                    text_ = f"unknown field '{name}'; did you mean '{hint[0]}'?"
                    result.issues.append(Issue(file, line, col, format_loc((*prefix, name)), text_))
                    refused = True
                    continue
                text_ = (
                    f"section '{name}' is not pullctl's: it is passed through to the downstream pipeline,"
                    " not validated"
                )
                severity = "error" if strict else "warning"
                result.issues.append(Issue(file, line, col, format_loc((*prefix, name)), text_, severity))
                refused = refused or strict
            try:
                config = SourceConfig.model_validate(raw, context={"target": target})
            except ValidationError as exc:
                found = validation_issues(exc, raw, pos, file, prefix)
                result.issues.extend(found)
                result.issues.extend(template_issues(raw, pos, file, prefix, {i.path for i in found}))
                if isinstance(raw.get("source_id"), str):
                    result.invalid[raw["source_id"]] = file
                continue
            if refused:
                continue
            line, _ = pos.of_key(("source_id",)) or pos.of_value(())
            positions = {
                f"ingestion.{place}": pos.of_value(("ingestion", *place.split(".")))
                for place in CROSS_CHECKED
            }
            result.sources.append(LoadedSource(config, raw, file, line, config_hash(raw), positions))
            for where, message in _advice(config):
                line_, col = pos.of_value(where)
                result.issues.append(
                    Issue(file, line_, col, format_loc((*prefix, *where)), message, "warning")
                )
    if not result.sources and not result.issues:
        result.issues.append(
            Issue(file, 1, 1, "", "the file is empty; expected a source config with source_id and ingestion")
        )
    return result


def _advice(config: SourceConfig) -> Iterator[tuple[tuple[str, ...], str]]:
    """Warnings on a valid config: (where, message). It loads, but something in it reads as a mistake."""
    ing = config.ingestion
    alias = ing.pagination.stop_when_empty_path
    if alias and ing.records is None:
        message = f"an alias of records.path: write records: {{path: {alias}}} instead"
        yield ("ingestion", "pagination", "stop_when_empty_path"), message
    iteration = ing.iteration
    if iteration is not None and iteration.items is not None and iteration.shards > len(iteration.items):
        count = len(iteration.items)
        empty = iteration.shards - count
        message = (
            f"{iteration.shards} shards over {count} static item{'s' if count != 1 else ''}: {empty} shard"
            f"{'s get' if empty != 1 else ' gets'} no item, and a run with nothing to fetch fails"
        )
        yield ("ingestion", "iteration", "shards"), message


def iter_config_files(paths: Sequence[str | Path]) -> Iterable[Path]:
    for p in paths:
        path = Path(p)
        if path.is_dir():
            # Hidden entries are skipped: a mounted ConfigMap keeps a copy of each file under ..<timestamp>/
            found = (f for f in path.rglob("*") if f.suffix in (".yaml", ".yml") and f.is_file())
            visible = (f for f in found if not any(n.startswith(".") for n in f.relative_to(path).parts))
            yield from sorted(visible)
        elif path.exists():
            yield path
        else:
            raise ConfigError(
                f"{p}: no such file or folder (looked for {path.absolute()}); point pullctl to the source"
                " configs with --config PATH or PULLCTL_CONFIG=PATH"
            )


@dataclass(frozen=True)
class ConfigEntry:
    """One file or stored document as a reader gives it: its YAML text, or why it could not be read."""

    name: str  # what located issues point at: cfg/a.yaml, mongodb:source_configs/<id>
    text: str | None
    problem: str = "cannot be read"  # when text is None


def read_files(paths: Sequence[str | Path]) -> Iterator[ConfigEntry]:
    """The config files under ``paths`` (see ``iter_config_files``), each with its text or why it has none."""
    for path in iter_config_files(paths):
        try:
            yield ConfigEntry(str(path), path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            yield ConfigEntry(str(path), None, f"cannot read the file: {exc}")


def load_entries(
    entries: Iterable[ConfigEntry], *, target: Target = "k8s", strict: bool = False
) -> LoadResult:
    """Parse and validate every entry; duplicate source ids across entries are errors naming both places."""
    result = LoadResult()
    for entry in entries:
        result.files += 1
        if entry.text is None:
            result.issues.append(Issue(entry.name, 1, 1, "", entry.problem))
            continue
        one = load_text(entry.text, entry.name, target=target, strict=strict)
        result.issues.extend(one.issues)
        result.sources.extend(one.sources)
        result.invalid.update(one.invalid)
    seen: dict[str, LoadedSource] = {}
    unique: list[LoadedSource] = []
    for src in result.sources:
        first = seen.get(src.source_id)
        if first is not None:
            message = f"duplicate source_id '{src.source_id}' (also defined at {first.file}:{first.line})"
            result.issues.append(Issue(src.file, src.line, 1, "source_id", message))
            continue
        seen[src.source_id] = src
        unique.append(src)
    result.sources = unique
    check_parents(result)
    result.issues.sort(key=lambda i: (i.file, i.line, i.column))
    return result


def load_paths(paths: Sequence[str | Path], *, target: Target = "k8s", strict: bool = False) -> LoadResult:
    """Load every config file under ``paths`` (``ConfigSource(paths).all()`` is the same for commands)."""
    return load_entries(read_files(paths), target=target, strict=strict)

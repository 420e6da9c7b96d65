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

import copy
import dataclasses
import types
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pullctl.config.models import KNOWN_TOP_LEVEL, SourceConfig, config_hash, raw_template_problems
from pullctl.config.schedule import Target
from pullctl.errors import ConfigError, Issue

Loc = tuple[str | int, ...]
# libyaml's parser when PyYAML was built with it (about 5x faster); same nodes, marks and errors otherwise.
_YamlLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class LoadedSource:
    config: SourceConfig
    raw: dict[str, Any]
    file: str
    line: int
    config_hash: str
    # where the fields checked across sources sit: "ingestion.iteration.from_source" -> (line, col)
    positions: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    # iteration.from_source: the parent chain, nearest first (teams <- channels <- messages: channels, teams)
    parents: tuple[LoadedSource, ...] = ()

    @property
    def source_id(self) -> str:
        return self.config.source_id

    def at(self, field_path: str) -> tuple[int, int]:
        return self.positions.get(field_path, (self.line, 1))


@dataclass
class LoadResult:
    sources: list[LoadedSource] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    invalid: dict[str, str] = field(default_factory=dict)  # source_id -> file, for sources that did not load
    files: int = 0

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    def raise_for_errors(self) -> None:
        if self.errors:
            noun = "error" if len(self.errors) == 1 else "errors"
            lines = "\n".join(str(i) for i in self.errors)
            raise ConfigError(f"{len(self.errors)} config {noun}:\n{lines}", self.errors)

    def get(self, source_id: str) -> LoadedSource:
        for s in self.sources:
            if s.source_id == source_id:
                return s
        if source_id in self.invalid:
            self._raise_for(self.invalid[source_id])
        own = [f for f in self._broken_files() if Path(f).stem == source_id]
        if own:  # weather-api.yaml that does not parse: its errors, not "no source 'weather-api'"
            self._raise_for(own[0])
        known = [s.source_id for s in self.sources]
        hint = get_close_matches(source_id, known, n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else f" (known: {', '.join(known) or 'none'})"
        message = f"no source '{source_id}' in the configs{suggestion}"
        broken = [i for i in self.errors if i.file in self._broken_files()]
        if broken:
            files = sorted({i.file for i in broken})
            which = "a file that has" if len(files) == 1 else f"{len(files)} files that have"
            message += f"; it may be in {which} errors:\n" + "\n".join(str(i) for i in broken)
        raise ConfigError(message, broken)

    def _broken_files(self) -> list[str]:
        """Files with errors that gave no source (a YAML syntax error, a source_id that is not one)."""
        loaded = {s.file for s in self.sources} | set(self.invalid.values())
        return sorted({i.file for i in self.errors} - loaded)

    def one(self, source_id: str) -> LoadedSource:
        """``get``, refused when the source's own file has errors (errors in other files do not block it)."""
        source = self.get(source_id)
        self._raise_for(source.file)
        return source

    def _raise_for(self, file: str) -> None:
        """A ``ConfigError`` with the errors of ``file``, when it has any."""
        errors = [i for i in self.errors if i.file == file]
        if errors:
            noun = "error" if len(errors) == 1 else "errors"
            raise ConfigError(f"{len(errors)} config {noun}:\n" + "\n".join(str(i) for i in errors), errors)


@dataclass
class _Positions:
    """Where each value and each key of a document sits (1-based line and column)."""

    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def of_value(self, loc: Loc) -> tuple[int, int]:
        while loc not in self.values and loc:
            loc = loc[:-1]
        return self.values.get(loc, (1, 1))

    def of_mapping(self, loc: Loc) -> tuple[int, int]:
        """The line of the key that holds the mapping at ``loc`` (its own start for a document root)."""
        while loc and loc not in self.keys:
            loc = loc[:-1]
        return self.keys[loc] if loc else self.values.get((), (1, 1))


MERGE_TAG = "tag:yaml.org,2002:merge"
STR_TAG = "tag:yaml.org,2002:str"
MAX_ALIAS_EXPANSION = 100_000  # values that aliases may stand for, per document ("billion laughs" guard)


def _mark(event: Any) -> tuple[int, int]:  # a parser event (yaml.Event); its marks are always set
    return event.start_mark.line + 1, event.start_mark.column + 1


class _Builder:
    """Builds plain Python values straight from the parser's events, noting positions and duplicate keys.

    No node tree is held (for 50,000 configured items it was 2.5 KB an item at the peak). Merge keys
    (``<<: *base``) work as YAML 1.1 defines them: explicit keys win, then the merged mappings in order.
    An alias is a copy of its anchor's value, so a source never shares a mapping with another.
    """

    def __init__(self, loader: Any, file: str, issues: list[Issue]) -> None:
        self.loader = loader
        self.file = file
        self.issues = issues
        self.anchors: dict[str, Any] = {}
        self.sizes: dict[str, int] = {}  # values each anchor stands for, its aliases expanded
        self.count = 0  # values built in this document, aliases expanded
        self.expanded = 0  # of which through aliases

    def document(self, pos: _Positions) -> Any:
        self.anchors, self.sizes, self.count, self.expanded = {}, {}, 0, 0
        return self.build(self.loader.get_event(), (), pos)

    def _issue(self, event: Any, loc: Loc, message: str) -> None:
        line, col = _mark(event)
        self.issues.append(Issue(self.file, line, col, format_loc(loc), message))

    def _tag(self, event: Any) -> str:
        if event.tag is None or event.tag == "!":
            return str(self.loader.resolve(yaml.ScalarNode, event.value, event.implicit))
        return str(event.tag)

    def _scalar(self, event: Any, tag: str) -> Any:
        if tag == STR_TAG:  # most scalars: PyYAML's constructor returns the text as it is
            return event.value
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        constructor = self.loader.yaml_constructors.get(tag)
        if constructor is not None:
            return constructor(self.loader, node)
        value = self.loader.construct_object(node)  # an unknown tag: PyYAML's own error
        self.loader.constructed_objects.pop(node, None)
        return value

    def _skip(self, event: Any) -> None:
        """Consume the rest of the collection that ``event`` starts (nothing for a scalar or alias)."""
        depth = 1 if isinstance(event, yaml.CollectionStartEvent) else 0
        while depth:
            nxt = self.loader.get_event()
            depth += isinstance(nxt, yaml.CollectionStartEvent) - isinstance(nxt, yaml.CollectionEndEvent)

    def build(self, event: Any, loc: Loc, pos: _Positions) -> Any:
        block = isinstance(event, yaml.CollectionStartEvent) and not event.flow_style
        # A block mapping or list is best pointed at by its key; a scalar or flow collection by its value.
        pos.values[loc] = pos.keys[loc] if block and loc in pos.keys else _mark(event)
        value: Any
        self.count += 1
        start = self.count
        if isinstance(event, yaml.AliasEvent):
            anchor = str(event.anchor)
            if anchor not in self.anchors:
                self._issue(event, loc, f"undefined alias '*{anchor}' (no '&{anchor}' before it)")
                return None
            size = self.sizes[anchor]
            self.count += size
            self.expanded += size
            if self.expanded > MAX_ALIAS_EXPANSION:
                if self.expanded - size <= MAX_ALIAS_EXPANSION:  # say it once
                    self._issue(
                        event, loc, f"aliases expand to more than {MAX_ALIAS_EXPANSION:,} values; refused"
                    )
                return None
            return copy.deepcopy(self.anchors[anchor])  # a value of its own, as written out (bounded above)
        if isinstance(event, yaml.ScalarEvent):
            value = self._scalar(event, self._tag(event))
        elif isinstance(event, yaml.SequenceStartEvent):
            value = []
            while not self.loader.check_event(yaml.SequenceEndEvent):
                value.append(self.build(self.loader.get_event(), (*loc, len(value)), pos))
            self.loader.get_event()
        else:
            value = self._mapping(loc, pos)
        if event.anchor is not None:
            self.anchors[event.anchor] = value
            self.sizes[event.anchor] = self.count - start + 1
        return value

    def _mapping(self, loc: Loc, pos: _Positions) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, int] = {}
        merges: list[tuple[Any, Any]] = []
        while not self.loader.check_event(yaml.MappingEndEvent):
            key_event = self.loader.get_event()
            if not isinstance(key_event, yaml.ScalarEvent):
                self._issue(key_event, loc, "a key must be a plain scalar")
                self._skip(key_event)
                self._skip(self.loader.get_event())
                continue
            tag = self._tag(key_event)
            if tag == MERGE_TAG:
                merges.append((key_event, self.build(self.loader.get_event(), (*loc, "<<"), _Positions())))
                continue
            key = self._scalar(key_event, tag)
            key = key if isinstance(key, str) else str(key)
            line, col = _mark(key_event)
            if key in first_seen:
                self._issue(
                    key_event, (*loc, key), f"duplicate key '{key}' (first defined at line {first_seen[key]})"
                )
                self._skip(self.loader.get_event())
                continue
            first_seen[key] = line
            sub = (*loc, key)
            pos.keys[sub] = (line, col)
            result[key] = self.build(self.loader.get_event(), sub, pos)
        self.loader.get_event()
        for key_event, merged in merges:
            for source in merged if isinstance(merged, list) else [merged]:
                if not isinstance(source, dict):
                    self._issue(
                        key_event,
                        (*loc, "<<"),
                        f"a merge key '<<' takes a mapping or a list of mappings (got {_describe(source)})",
                    )
                    continue
                for key, value in source.items():
                    if key not in result:
                        result[key] = value
                        pos.keys[(*loc, key)] = pos.values[(*loc, key)] = _mark(key_event)
        return result


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _documents(text: str, file: str, issues: list[Issue]) -> list[tuple[Any, _Positions]]:
    docs: list[tuple[Any, _Positions]] = []
    try:
        loader = _YamlLoader(text)
    except yaml.reader.ReaderError as exc:
        issues.append(
            Issue(file, 1, 1, "", f"not a YAML text file: {exc.reason} (character #x{exc.character:04x})")
        )
        return docs
    try:
        builder = _Builder(loader, file, issues)
        loader.get_event()  # StreamStart
        while not loader.check_event(yaml.StreamEndEvent):
            loader.get_event()  # DocumentStart
            pos = _Positions()
            before = len(issues)
            value = builder.document(pos)
            loader.get_event()  # DocumentEnd
            if len(issues) == before:  # a document with duplicate or complex keys yields no source
                docs.append((value, pos))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        issues.append(Issue(file, line, col, "", f"YAML syntax error: {problem}"))
    except yaml.YAMLError as exc:
        issues.append(Issue(file, 1, 1, "", f"YAML error: {exc}"))
    finally:
        loader.dispose()
    return docs


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class whose field set applies at ``loc`` (for did-you-mean suggestions)."""
    model: type[BaseModel] | None = SourceConfig
    is_key = False  # the part after a field of type dict[str, Model] is a key of that mapping
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int) or is_key:
            is_key = False
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        model = _find_model(info.annotation)
        is_key = typing.get_origin(info.annotation) is dict
    return model


def _find_model(tp: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType, typing.Annotated, list, dict):
        for arg in typing.get_args(tp):
            found = _find_model(arg)
            if found:
                return found
    return None


_PATTERN_HELP = {
    "source_id": "must be a lower-case DNS label: a-z, 0-9 and '-', starting and ending alphanumeric",
    "foreach": "must be an identifier (letters, digits and _, not starting with a digit)",
    "mcp_path": "must start with '/'",
    "secrets": "a secret's name must be an identifier (letters, digits and _, not starting with a digit),"
    " as written in {secret.NAME}",
}
_TYPE_NAMES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean"}


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _resolve(data: Any, loc: Loc) -> tuple[Loc, Loc]:
    """Split ``loc`` into the part that exists in ``data`` and the rest (union tags, missing fields)."""
    node = data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            node = node[part]
            continue
        if isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            continue
        return loc[:i], loc[i:]
    return loc, ()


def _validation_issues(
    exc: ValidationError, data: dict[str, Any], pos: _Positions, file: str, prefix: Loc
) -> list[Issue]:
    found: dict[Loc, Issue] = {}
    union_types: dict[Loc, list[str]] = {}
    for err in exc.errors():
        loc: Loc = tuple(err["loc"])
        kind, msg, value = err["type"], err["msg"], err.get("input")
        if msg.startswith("Value error, @"):
            fld, _, msg = msg[len("Value error, @") :].partition("@")
            loc = (*loc, *fld.split("."))
            exists, _ = _resolve(data, loc)
            line, col = pos.of_value(loc) if exists == loc else pos.of_mapping(loc[:-1])
            found.setdefault(loc, Issue(file, line, col, format_loc(prefix + loc), msg))
            continue
        if kind == "missing":
            line, col = pos.of_mapping(loc[:-1])
            found.setdefault(
                loc, Issue(file, line, col, format_loc(prefix + loc), f"'{loc[-1]}' is required")
            )
            continue
        if kind == "extra_forbidden":
            model = _model_at(loc[:-1])
            hint = get_close_matches(str(loc[-1]), list(model.model_fields) if model else [], n=1, cutoff=0.6)
            text = f"unknown field '{loc[-1]}'" + (f"; did you mean '{hint[0]}'?" if hint else "")
            if model and not hint:
                text += f" (allowed: {', '.join(model.model_fields)})"
            line, col = pos.keys.get(loc, pos.of_value(loc))
            found.setdefault(loc, Issue(file, line, col, format_loc(prefix + loc), text))
            continue
        exists, rest = _resolve(data, loc)
        if rest and all(isinstance(p, str) and p in _TYPE_NAMES for p in rest[-1:]):
            union_types.setdefault(exists, []).append(_TYPE_NAMES[str(rest[-1])])
            line, col = pos.of_value(exists)
            names = union_types[exists]
            either = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
            message = f"must be {either} (got {_describe(value)})"
            found[exists] = Issue(file, line, col, format_loc(prefix + exists), message)
            continue
        is_key = rest == ("[key]",)  # a mapping's key is at fault, not its value
        named = loc[-3] if is_key and len(loc) > 2 else loc[-1] if loc else None
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]  # our own validators name the value already
        else:
            if kind == "string_pattern_mismatch" and named in _PATTERN_HELP:
                msg = _PATTERN_HELP[str(named)]
            msg = msg.replace("Input should be", "must be").replace("String should", "must")
            msg = msg.replace("List should", "must").replace("Dictionary should", "must")
            if kind == "string_too_long" and loc == ("source_id",):
                msg += " (the CronJob name pull-<source_id> must fit in 52)"
            msg += f" (got {_describe(value)})"
        line, col = pos.keys[exists] if is_key and exists in pos.keys else pos.of_value(exists)
        found.setdefault(exists, Issue(file, line, col, format_loc(prefix + exists), msg))
    return list(found.values())


def _source_entries(
    doc: Any, pos: _Positions, file: str, issues: list[Issue]
) -> list[tuple[Loc, dict[str, Any]]]:
    if doc is None:
        return []
    expected = "expected a source config (a mapping with source_id and ingestion) or a 'sources:' list"
    if not isinstance(doc, dict):
        line, col = pos.of_value(())
        issues.append(Issue(file, line, col, "", f"{expected}, got {_describe(doc)}"))
        return []
    if "sources" not in doc:
        return [((), doc)]
    if set(doc) != {"sources"}:
        others = sorted(set(doc) - {"sources"})
        line, col = pos.keys[(others[0],)]
        issues.append(
            Issue(file, line, col, others[0], "a file with 'sources:' holds nothing else at the top level")
        )
        return []
    entries = doc["sources"]
    if not isinstance(entries, list):
        line, col = pos.of_value(("sources",))
        issues.append(
            Issue(file, line, col, "sources", f"must be a list of source configs (got {_describe(entries)})")
        )
        return []
    out: list[tuple[Loc, dict[str, Any]]] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, dict):
            out.append((("sources", i), entry))
        else:
            line, col = pos.of_value(("sources", i))
            issues.append(Issue(file, line, col, f"sources[{i}]", f"{expected}, got {_describe(entry)}"))
    return out


def _sub_positions(pos: _Positions, prefix: Loc) -> _Positions:
    if not prefix:
        return pos
    n = len(prefix)
    sub = _Positions()
    sub.values = {k[n:]: v for k, v in pos.values.items() if k[:n] == prefix}
    sub.keys = {k[n:]: v for k, v in pos.keys.items() if k[:n] == prefix}
    return sub


def _template_issues(
    raw: dict[str, Any], pos: _Positions, file: str, prefix: Loc, reported: set[str]
) -> list[Issue]:
    """The template errors of a config the schema refused (the model checks them only once the rest is
    valid), for fields the schema's errors do not already point at."""
    issues = []
    for where, message in raw_template_problems(raw.get("ingestion")):
        loc: Loc = ("ingestion", *where.split("."))
        path = format_loc(prefix + loc)
        if any(r == path or r.startswith(path + ".") or r.startswith(path + "[") for r in reported):
            continue
        line, col = pos.of_value(loc)
        issues.append(Issue(file, line, col, path, message))
    return issues


def load_text(text: str, file: str, *, target: Target = "k8s", strict: bool = False) -> LoadResult:
    """Parse and validate one file's text. Pure: no I/O."""
    result = LoadResult(files=1)
    docs = _documents(text, file, result.issues)
    for doc, doc_pos in docs:
        for prefix, raw in _source_entries(doc, doc_pos, file, result.issues):
            pos = _sub_positions(doc_pos, prefix)
            refused = False
            for name in sorted(set(raw) - set(KNOWN_TOP_LEVEL)):
                hint = get_close_matches(name, KNOWN_TOP_LEVEL, n=1, cutoff=0.75)
                line, col = pos.keys[(name,)]
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
                found = _validation_issues(exc, raw, pos, file, prefix)
                result.issues.extend(found)
                result.issues.extend(_template_issues(raw, pos, file, prefix, {i.path for i in found}))
                if isinstance(raw.get("source_id"), str):
                    result.invalid[raw["source_id"]] = file
                continue
            if refused:
                continue
            line, _ = pos.keys.get(("source_id",), pos.of_value(()))
            positions = {
                f"ingestion.{place}": pos.of_value(("ingestion", *place.split(".")))
                for place in CROSS_CHECKED
            }
            result.sources.append(LoadedSource(config, raw, file, line, config_hash(raw), positions))
            alias = config.ingestion.pagination.stop_when_empty_path
            if alias and config.ingestion.records is None:
                where = ("ingestion", "pagination", "stop_when_empty_path")
                line_, col = pos.of_value(where)
                message = f"an alias of records.path: write records: {{path: {alias}}} instead"
                result.issues.append(
                    Issue(file, line_, col, format_loc((*prefix, *where)), message, "warning")
                )
    if not result.sources and not result.issues:
        result.issues.append(
            Issue(file, 1, 1, "", "the file is empty; expected a source config with source_id and ingestion")
        )
    return result


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
    _check_parents(result)
    result.issues.sort(key=lambda i: (i.file, i.line, i.column))
    return result


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


def _check_parents(result: LoadResult) -> None:
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


def load_paths(paths: Sequence[str | Path], *, target: Target = "k8s", strict: bool = False) -> LoadResult:
    """Load every config file under ``paths`` (``ConfigSource(paths).all()`` is the same for commands)."""
    return load_entries(read_files(paths), target=target, strict=strict)

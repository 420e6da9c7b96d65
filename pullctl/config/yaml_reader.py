"""YAML text -> plain values, with the line and column of every key and value (``Positions``: noted as the
text is read, or on demand inside a large list).

Built from the parser's events (``_Builder``): duplicate keys, merge keys, aliases and their expansion limit
are checked here, each problem an ``Issue`` at ``file:line:col``.
"""

from __future__ import annotations

import copy
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from pullctl.errors import Issue

Loc = tuple[str | int, ...]
# libyaml's parser when PyYAML was built with it (about 5x faster); same nodes, marks and errors otherwise.
_YamlLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def summary(value: Any) -> str:
    """A value as a message shows it: ``a mapping``, ``a list``, else its repr (at most 60 characters)."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


NOTED_ELEMENTS = 1000  # a list's elements whose positions are noted as it is read; the others', on demand


@dataclass
class _Noted:
    """The positions noted in one document: ``values`` and ``keys`` by place; ``cut``: the lists whose
    elements from that index on were not noted; ``reread``: the document read again, every position noted."""

    reread: Callable[[], _Noted] | None = None
    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    cut: dict[Loc, int] = field(default_factory=dict)
    full: _Noted | None = None

    def holding(self, loc: Loc) -> _Noted:
        """These positions, or all of them when ``loc`` is in a list element that was not noted."""
        cut = self.cut
        if not cut or not any(type(p) is int and p >= cut.get(loc[:i], p + 1) for i, p in enumerate(loc)):
            return self
        if self.full is None:
            assert self.reread is not None, "a document read in full has no cut"
            self.full = self.reread()
        return self.full


class Positions:
    """Where each value and each key of a document sits (1-based line and column), or of the part of it at
    ``prefix`` (a source in a ``sources:`` list).

    They are noted as the document is read, except in a list's elements past its first ``NOTED_ELEMENTS``
    (a static list of 100,000 items held 640 B an item in positions): asking for a place in one of those
    reads the document again, noting every position, once. The answers are the same either way.
    """

    def __init__(self, noted: _Noted, prefix: Loc = ()) -> None:
        self._noted, self._prefix = noted, prefix

    def under(self, prefix: Loc) -> Positions:
        return Positions(self._noted, self._prefix + prefix) if prefix else self

    def of_value(self, loc: Loc) -> tuple[int, int]:
        loc = self._prefix + loc
        values, top = self._noted.holding(loc).values, len(self._prefix)
        while loc not in values and len(loc) > top:
            loc = loc[:-1]
        return values.get(loc, (1, 1))

    def of_key(self, loc: Loc) -> tuple[int, int] | None:
        """The position of the key that holds the value at ``loc`` (None: no key does)."""
        loc = self._prefix + loc
        return self._noted.holding(loc).keys.get(loc)

    def of_mapping(self, loc: Loc) -> tuple[int, int]:
        """The line of the key that holds the mapping at ``loc`` (its own start for a document root)."""
        loc = self._prefix + loc
        noted, top = self._noted.holding(loc), len(self._prefix)
        while len(loc) > top and loc not in noted.keys:
            loc = loc[:-1]
        return noted.keys[loc] if len(loc) > top else noted.values.get(loc, (1, 1))


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

    def __init__(self, loader: Any, file: str, issues: list[Issue], limit: int | None = None) -> None:
        self.loader = loader
        self.limit = limit  # a list's elements whose positions are noted (None: all)
        resolvers = loader.yaml_implicit_resolvers
        # what a plain scalar that is not a string (null, bool, int, float, date, merge) may start with
        self.typed_starts = None if None in resolvers or loader.yaml_path_resolvers else frozenset(resolvers)
        self.file = file
        self.issues = issues
        self.anchors: dict[str, Any] = {}
        self.sizes: dict[str, int] = {}  # values each anchor stands for, its aliases expanded
        self.count = 0  # values built in this document, aliases expanded
        self.expanded = 0  # of which through aliases

    def document(self, pos: _Noted | None) -> Any:
        self.anchors, self.sizes, self.count, self.expanded = {}, {}, 0, 0
        return self.build(self.loader.get_event(), (), pos)

    def _issue(self, event: Any, loc: Loc, message: str) -> None:
        line, col = _mark(event)
        self.issues.append(Issue(self.file, line, col, format_loc(loc), message))

    def _tag(self, event: Any) -> str:
        tag = event.tag
        if tag is not None and tag != "!":
            return str(tag)
        if self.typed_starts is not None and (
            not event.implicit[0] or event.value[:1] not in self.typed_starts
        ):
            return STR_TAG  # the resolver's answer, without its call: no implicit type can match
        return str(self.loader.resolve(yaml.ScalarNode, event.value, event.implicit))

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

    def build(self, event: Any, loc: Loc, pos: _Noted | None) -> Any:
        """The value that ``event`` starts, at ``loc``; its positions noted in ``pos`` (None: not noted)."""
        if pos is not None:
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
            noted = pos
            while not isinstance(element := self.loader.get_event(), yaml.SequenceEndEvent):
                if noted is not None and len(value) == self.limit:
                    noted.cut[loc] = len(value)  # the rest of this list is noted on demand (Positions)
                    noted = None
                value.append(self.build(element, (*loc, len(value)), noted))
        else:
            value = self._mapping(loc, pos)
        if event.anchor is not None:
            self.anchors[event.anchor] = value
            self.sizes[event.anchor] = self.count - start + 1
        return value

    def _mapping(self, loc: Loc, pos: _Noted | None) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, int] = {}
        merges: list[tuple[Any, Any]] = []
        while not isinstance(key_event := self.loader.get_event(), yaml.MappingEndEvent):
            if not isinstance(key_event, yaml.ScalarEvent):
                self._issue(key_event, loc, "a key must be a plain scalar")
                self._skip(key_event)
                self._skip(self.loader.get_event())
                continue
            tag = self._tag(key_event)
            if tag == MERGE_TAG:
                merges.append((key_event, self.build(self.loader.get_event(), (*loc, "<<"), None)))
                continue
            key = self._scalar(key_event, tag)
            key = sys.intern(key if isinstance(key, str) else str(key))  # one 'id' for 100,000 items
            line, col = _mark(key_event)
            if key in first_seen:
                self._issue(
                    key_event, (*loc, key), f"duplicate key '{key}' (first defined at line {first_seen[key]})"
                )
                self._skip(self.loader.get_event())
                continue
            first_seen[key] = line
            sub = (*loc, key)
            if pos is not None:
                pos.keys[sub] = (line, col)
            result[key] = self.build(self.loader.get_event(), sub, pos)
        for key_event, merged in merges:
            for source in merged if isinstance(merged, list) else [merged]:
                if not isinstance(source, dict):
                    self._issue(
                        key_event,
                        (*loc, "<<"),
                        f"a merge key '<<' takes a mapping or a list of mappings (got {summary(source)})",
                    )
                    continue
                for key, value in source.items():
                    if key not in result:
                        result[key] = value
                        if pos is not None:
                            pos.keys[(*loc, key)] = pos.values[(*loc, key)] = _mark(key_event)
        return result


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def documents(text: str, file: str, issues: list[Issue]) -> list[tuple[Any, Positions]]:
    docs: list[tuple[Any, Positions]] = []
    try:
        loader = _YamlLoader(text)
    except yaml.reader.ReaderError as exc:
        issues.append(
            Issue(file, 1, 1, "", f"not a YAML text file: {exc.reason} (character #x{exc.character:04x})")
        )
        return docs
    try:
        builder = _Builder(loader, file, issues, NOTED_ELEMENTS)
        loader.get_event()  # StreamStart
        index = 0
        while not loader.check_event(yaml.StreamEndEvent):
            loader.get_event()  # DocumentStart
            pos = _Noted(functools.partial(_reread, text, file, index))
            before = len(issues)
            value = builder.document(pos)
            loader.get_event()  # DocumentEnd
            if len(issues) == before:  # a document with duplicate or complex keys yields no source
                docs.append((value, Positions(pos)))
            index += 1
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


def _reread(text: str, file: str, index: int) -> _Noted:
    """Every position of the ``index``-th document of ``text`` (read before, so it reads the same)."""
    loader = _YamlLoader(text)
    try:
        builder = _Builder(loader, file, [])
        loader.get_event()  # StreamStart
        for _ in range(index):
            loader.get_event()  # DocumentStart
            builder.document(None)
            loader.get_event()  # DocumentEnd
        loader.get_event()
        pos = _Noted()
        builder.document(pos)
        return pos
    finally:
        loader.dispose()

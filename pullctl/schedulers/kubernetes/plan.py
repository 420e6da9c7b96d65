"""The sync plan (pure): rendered vs the set's live objects by config hash, and the field diff of an update.

plan_sync(desired, live, ...)   -> [PlanEntry]: create / update / unchanged / delete / keep
field_diff(desired, live)       -> "~ path: old -> new" lines, from the live object's managedFields
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pullctl.schedulers.kubernetes.options import FIELD_MANAGER, HASH_ANNOTATION, LABEL_INSTANCE

Obj = dict[str, Any]
Action = Literal["create", "update", "unchanged", "delete", "keep"]

KINDS = ("ConfigMap", "CronJob")  # apply order: a CronJob never starts without its ConfigMap


@dataclass
class PlanEntry:
    """One object of the plan and, after ``sync``, what became of it (``error`` None: done)."""

    kind: str
    name: str
    action: Action
    source_id: str | None = None
    diff: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.kind.lower()}/{self.name}"

    @property
    def writes(self) -> bool:
        return self.action in ("create", "update", "delete")

    def to_dict(self) -> Obj:
        return {
            "kind": self.kind,
            "name": self.name,
            "source_id": self.source_id,
            "action": self.action,
            "diff": self.diff,
            "error": self.error,
        }


def key_of(obj: Obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _hash_of(obj: Obj) -> str | None:
    value = (obj.get("metadata", {}).get("annotations") or {}).get(HASH_ANNOTATION)
    return value if isinstance(value, str) else None


def plan_sync(
    desired: Sequence[Obj], live: Sequence[Obj], *, prune: bool, diff: bool = False
) -> list[PlanEntry]:
    """Compare the rendered objects with the set's live objects by config hash. Pure.

    ``live`` must hold only objects the set owns (the label-selected lists). Owned objects that are no longer
    rendered are ``delete`` with ``prune``, else ``keep``. Entries come sorted by name, then kind.
    """
    live_by_key = {key_of(o): o for o in live}
    desired_keys = {key_of(o) for o in desired}
    entries: list[PlanEntry] = []
    for obj in desired:
        source_id = obj["metadata"]["labels"].get(LABEL_INSTANCE)
        current = live_by_key.get(key_of(obj))
        if current is None:
            entries.append(PlanEntry(obj["kind"], obj["metadata"]["name"], "create", source_id))
        elif _hash_of(current) != _hash_of(obj):
            changes = field_diff(obj, current) if diff else []
            entries.append(PlanEntry(obj["kind"], obj["metadata"]["name"], "update", source_id, changes))
        else:
            entries.append(PlanEntry(obj["kind"], obj["metadata"]["name"], "unchanged", source_id))
    for key, obj in live_by_key.items():
        if key not in desired_keys:
            source_id = (obj.get("metadata", {}).get("labels") or {}).get(LABEL_INSTANCE)
            entries.append(PlanEntry(key[0], key[1], "delete" if prune else "keep", source_id))
    entries.sort(key=lambda e: (e.name, KINDS.index(e.kind) if e.kind in KINDS else 9))
    return entries


# -- field-level diff ------------------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _child(path: str, key: str) -> str:
    if _PLAIN_KEY.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def _flatten(value: Any, path: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Leaf paths of an object: maps by key, lists of named maps by ``[name=...]``, other lists whole."""
    out = {} if out is None else out
    if isinstance(value, dict) and value:
        for key in value:
            _flatten(value[key], _child(path, str(key)), out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        for item in value:
            _flatten(item, f"{path}[name={item['name']}]", out)
    else:
        out[path] = value
    return out


def _owned_paths(live: Obj, manager: str = FIELD_MANAGER) -> set[str]:
    """Leaf paths the manager's last apply set (``managedFields``, FieldsV1), named as ``_flatten`` does."""
    paths: set[str] = set()

    def walk(node: Obj, path: str) -> None:
        children = [k for k in node if k != "."]
        if not children:
            paths.add(path)
            return
        for key in children:
            if key.startswith("f:"):
                walk(node[key] or {}, _child(path, key[2:]))
            elif key.startswith("k:"):
                try:
                    ident = json.loads(key[2:])
                except ValueError:
                    paths.add(path)
                    continue
                if isinstance(ident, dict) and set(ident) == {"name"}:
                    walk(node[key] or {}, f"{path}[name={ident['name']}]")
                else:
                    paths.add(path)
            else:  # v: (a set-list value) or i: (an index): the list counts as one field here
                paths.add(path)

    for entry in live.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            walk(entry.get("fieldsV1") or {}, "")
    return paths


def _prefixes(path: str) -> Iterator[str]:
    """``a.b[name=x].c`` -> ``a``, ``a.b``, ``a.b[name=x]``, ``a.b[name=x].c`` (whole segments only)."""
    for i, ch in enumerate(path):
        if ch in ".[" and i:
            yield path[:i]
    yield path


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def field_diff(desired: Obj, live: Obj) -> list[str]:
    """Field-level changes from ``live`` to ``desired``: ``~ path: old -> new``, ``+ path: new``, ``- path``.

    Only fields pullctl sets are compared (server defaults and status are not changes); a field pullctl set
    before and no longer renders is a removal. The config-hash annotation itself is left out.
    """
    skip = _child(_child(_child("", "metadata"), "annotations"), HASH_ANNOTATION)
    want = _flatten(desired)
    have = _flatten({k: v for k, v in live.items() if k != "status"})
    changes: dict[str, list[str]] = {}  # path -> its lines, printed in path order
    for path, new in want.items():
        if path == skip:
            continue
        if path not in have:
            changes[path] = [f"+ {path}: {_show(new)}"]
        elif have[path] != new:
            old = have[path]
            if isinstance(old, str) and isinstance(new, str) and ("\n" in old or "\n" in new):
                body = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=1)
                changes[path] = [f"~ {path}:", *(f"    {line}" for line in list(body)[2:])]
            else:
                changes[path] = [f"~ {path}: {_show(old)} -> {_show(new)}"]
    kept = {prefix for p in want for prefix in _prefixes(p)}
    for path in _owned_paths(live):
        if path and path != skip and path not in kept and path in have:
            changes[path] = [f"- {path}"]
    return [line for path in sorted(changes) for line in changes[path]]

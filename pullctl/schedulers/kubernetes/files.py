"""``pullctl render --out DIR``: one ``pull-<source_id>.yaml`` per source, for GitOps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pullctl.schedulers.kubernetes.options import (
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_SET,
    RenderOptions,
    object_name,
)
from pullctl.schedulers.kubernetes.render import dump_yaml

Obj = dict[str, Any]


def by_source(objects: Sequence[Obj]) -> dict[str, list[Obj]]:
    out: dict[str, list[Obj]] = {}
    for obj in objects:
        out.setdefault(obj["metadata"]["labels"][LABEL_INSTANCE], []).append(obj)
    return out


@dataclass(frozen=True)
class WrittenFiles:
    written: list[Path]
    removed: list[Path]


def write_files(objects: Sequence[Obj], out_dir: Path, options: RenderOptions, prune: bool) -> WrittenFiles:
    """One ``pull-<source_id>.yaml`` per source in ``out_dir`` (for GitOps). With ``prune``, a ``pull-*.yaml``
    of the same set whose source is no longer rendered is removed, so a deleted source leaves the repo too."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for source_id, objs in by_source(objects).items():
        path = out_dir / f"{object_name(source_id)}.yaml"
        text = dump_yaml(objs)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    removed: list[Path] = []
    if prune:
        keep = set(written)
        for path in sorted(out_dir.glob("pull-*.yaml")):
            if path not in keep and _owned_file(path, options.set_name):
                path.unlink()
                removed.append(path)
    return WrittenFiles(written, removed)


def _owned_file(path: Path, set_name: str) -> bool:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return bool(docs) and all(
        isinstance(d, dict)
        and isinstance(d.get("metadata"), dict)
        and isinstance(d["metadata"].get("labels"), dict)
        and d["metadata"]["labels"].get(LABEL_MANAGED_BY) == "pullctl"
        and d["metadata"]["labels"].get(LABEL_SET) == set_name
        for d in docs
    )

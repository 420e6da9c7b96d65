"""The configuration reference, generated from the models (``pullctl schema --format markdown``).

``docs/config-reference.md`` is this function's output; a test fails when the two differ.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from pullctl.config.models import SourceConfig


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " or ".join(f"`{a}`" for a in args)
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"[{tp.__name__}](#{tp.__name__.lower()})"
    return getattr(tp, "__name__", str(tp)).replace("Any", "any")


def _default(info: Any) -> str:
    if info.is_required():
        return "**required**"
    if info.default_factory is not None:
        value = info.default_factory()
        return "(see below)" if isinstance(value, BaseModel) else f"`{value}`"
    return (
        "`null`"
        if info.default is None
        else f"`{info.default}`"
        if info.default is not PydanticUndefined
        else ""
    )


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []
    todo = [root]
    while todo:
        model = todo.pop(0)
        if model in seen:
            continue
        seen.append(model)
        for info in model.model_fields.values():
            todo.extend(_nested(info.annotation))
    return seen


def _nested(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for a in typing.get_args(tp) for m in _nested(a)]


def render_reference() -> str:
    lines = [
        "# Source config reference",
        "",
        "Generated from the models by `pullctl schema --format markdown`; do not edit by hand.",
        "",
    ]
    for model in _models(SourceConfig):
        lines += [f"## {model.__name__}", ""]
        doc = (model.__doc__ or "").strip().splitlines()
        if doc and model is SourceConfig:
            lines += [doc[0], ""]
        lines += ["| field | type | default | description |", "| --- | --- | --- | --- |"]
        for name, info in model.model_fields.items():
            limits = [
                f"{word} {getattr(m, attr)}"
                for m in info.metadata
                for attr, word in (
                    ("ge", ">="),
                    ("gt", ">"),
                    ("le", "<="),
                    ("lt", "<"),
                    ("max_length", "length <="),
                )
                if getattr(m, attr, None) is not None
            ]
            desc = "; ".join(filter(None, [info.description or "", ", ".join(limits)])).replace("|", "\\|")
            lines.append(f"| `{name}` | {_type_name(info.annotation)} | {_default(info)} | {desc} |")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"

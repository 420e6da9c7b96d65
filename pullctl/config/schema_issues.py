"""pydantic's ``ValidationError`` -> ``Issue``s located at the field at fault, in the project's words
(did-you-mean for unknown fields, the allowed values, the value that came), and the template errors
of a config the schema refused.
"""

from __future__ import annotations

import types
import typing
from difflib import get_close_matches
from typing import Any

from pydantic import BaseModel, ValidationError

from pullctl.config.models import SourceConfig, raw_template_problems
from pullctl.config.yaml_reader import Loc, Positions, format_loc, summary
from pullctl.errors import Issue


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


def validation_issues(
    exc: ValidationError, data: dict[str, Any], pos: Positions, file: str, prefix: Loc
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
            line, col = pos.of_key(loc) or pos.of_value(loc)
            found.setdefault(loc, Issue(file, line, col, format_loc(prefix + loc), text))
            continue
        exists, rest = _resolve(data, loc)
        if rest and all(isinstance(p, str) and p in _TYPE_NAMES for p in rest[-1:]):
            union_types.setdefault(exists, []).append(_TYPE_NAMES[str(rest[-1])])
            line, col = pos.of_value(exists)
            names = union_types[exists]
            either = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
            message = f"must be {either} (got {summary(value)})"
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
            msg += f" (got {summary(value)})"
        line, col = (is_key and pos.of_key(exists)) or pos.of_value(exists)
        found.setdefault(exists, Issue(file, line, col, format_loc(prefix + exists), msg))
    return list(found.values())


def template_issues(
    raw: dict[str, Any], pos: Positions, file: str, prefix: Loc, reported: set[str]
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

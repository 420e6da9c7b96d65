"""`{name.path}` templates: a value lookup, never code.

    {region.latitude}            a field of the iteration item
    {window.start:%Y-%m-%d}      a strftime format for dates
    {secret.dev_token}           a named secret (request parameters, headers and body only)
    {{ and }}                    literal braces

Rendering for a URL percent-encodes every substituted value (``safe=""``), so an item value such as
``../admin``, ``@evil.example`` or ``x?y=1#z`` can never change the scheme, host or path structure.
Rendering for a header refuses CR and LF. Parsing and rendering are pure.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from pullctl.config.paths import MISSING, follow

_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")

#: ``{secret.NAME}``: the named secrets of ``ingestion.secrets`` (their names are the source's own).
SECRET_VARIABLE = "secret"

#: The variables every run provides, with the fields each one has (``()``: fields the config names).
BUILTIN_VARIABLES: dict[str, tuple[str, ...]] = {
    "window": ("start", "end"),
    "run": ("id",),
    "source": ("id",),
    SECRET_VARIABLE: (),
}


class TemplateSyntaxError(ValueError):
    """The template text itself is malformed (an unclosed brace, an empty name)."""


class MissingValue(LookupError):
    """A template names a value the context does not have, or has as null."""

    def __init__(self, expression: str) -> None:
        super().__init__(expression)
        self.expression = expression

    def __str__(self) -> str:
        return f"{{{self.expression}}} is missing or null"


@dataclass(frozen=True)
class Field:
    """One ``{name.path:format}`` reference."""

    expression: str
    path: tuple[str, ...]
    format_spec: str | None

    @property
    def root(self) -> str:
        return self.path[0]


@dataclass(frozen=True)
class Template:
    text: str
    parts: tuple[str | Field, ...]

    @property
    def fields(self) -> tuple[Field, ...]:
        return tuple(p for p in self.parts if isinstance(p, Field))

    @property
    def is_static(self) -> bool:
        return not self.fields

    def render(self, context: dict[str, Any], *, quote_values: bool = False) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            text = format_value(lookup(context, part), part)
            out.append(quote(text, safe="") if quote_values else text)
        return "".join(out)


@lru_cache(maxsize=4096)
def parse(text: str) -> Template:
    """Parse ``text``; raise ``TemplateSyntaxError`` naming the problem."""
    parts: list[str | Field] = []
    literal: list[str] = []
    pos = 0
    for m in _FIELD.finditer(text):
        literal.append(text[pos : m.start()])
        pos = m.end()
        token = m.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        if m.group(1) is None:
            raise TemplateSyntaxError(
                f"unmatched '{token}' at position {m.start()} in {text!r}"
                f" (write '{token}{token}' for a literal brace)"
            )
        expression = m.group(1)
        name, _, spec = expression.partition(":")
        name = name.strip()
        if not _NAME.match(name):
            raise TemplateSyntaxError(f"'{{{expression}}}' is not a variable reference like {{item.field}}")
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(Field(expression, tuple(name.split(".")), spec or None))
    literal.append(text[pos:])
    if any(literal):
        parts.append("".join(literal))
    return Template(text, tuple(parts))


def lookup(context: dict[str, Any], fld: Field) -> Any:
    """Follow ``fld.path`` (as ``paths.py`` does); raise ``MissingValue`` on a gap or a null."""
    value = follow(context, fld.path).value
    if value is None or value is MISSING:
        raise MissingValue(fld.expression)
    return value


def format_value(value: Any, fld: Field) -> str:
    if isinstance(value, datetime | date) and fld.format_spec:
        return value.strftime(fld.format_spec)
    if fld.format_spec:
        return format(value, fld.format_spec)
    return format_text(value)


def format_text(value: Any) -> str:
    """A value as a template writes it: ISO-8601 instants, ``true``/``false``, compact JSON for objects."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return str(value)


def render_header(template: str, context: dict[str, Any]) -> str:
    """Render a header value; CR or LF in the result would smuggle a header and is refused, and so is a
    character outside ASCII (httpx could not send it). The message names the template, never the value."""
    value = parse(template).render(context)
    if "\r" in value or "\n" in value:
        raise ValueError(f"header value from {template!r} contains a line break")
    if not value.isascii():
        raise ValueError(
            f"header value from {template!r} holds a character outside ASCII; a header carries ASCII"
        )
    return value


def render_value(value: Any, context: dict[str, Any]) -> Any:
    """Render templates inside every string of a JSON-like value (a POST body)."""
    if isinstance(value, str):
        return parse(value).render(context)
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    return value


def template_fields(value: Any) -> list[Field]:
    """Every field referenced by the templates inside a JSON-like value."""
    if isinstance(value, str):
        return list(parse(value).fields)
    if isinstance(value, dict):
        return [f for v in value.values() for f in template_fields(v)]
    if isinstance(value, list):
        return [f for v in value for f in template_fields(v)]
    return []

"""`{name.path}` templates: a value lookup, never code.

    {region.latitude}            a field of the iteration item
    {window.start:%Y-%m-%d}      a strftime format for dates
    {incremental.start:epoch}    an instant as epoch seconds (``epoch_ms``: milliseconds); portable, not %s
    {secret.dev_token}           a named secret (request parameters, headers and body only)
    {{ and }}                    literal braces

Rendering for a URL percent-encodes every substituted value (``safe=""``), so an item value such as
``../admin``, ``@evil.example`` or ``x?y=1#z`` can never change the scheme, host or path structure.
Rendering for a header refuses CR and LF. Parsing and rendering are pure.

``{incremental.start}`` may be *absent* (no state yet, no ``initial_value``): a parameter, header or body
field whose whole value is such a template is left out of the request (``is_absent``, ``render_value(...,
omit_absent=True)``), never sent empty.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from pullctl.config.paths import MISSING, follow

_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")

#: ``{secret.NAME}``: the named secrets of ``ingestion.secrets`` (their names are the source's own).
SECRET_VARIABLE = "secret"

#: ``{incremental.start}``: the state kept between runs (SOURCES.md §7), known when ``ingestion.incremental``
#: is configured; it may be absent (no state, no initial value), and then what holds only it is left out.
INCREMENTAL_VARIABLE, INCREMENTAL_FIELDS = "incremental", ("start",)
OPTIONAL_ROOTS = frozenset({INCREMENTAL_VARIABLE})
#: The formats an instant takes besides a strftime pattern: portable (glibc's ``%s`` is not).
EPOCH_FORMATS = ("epoch", "epoch_ms")

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
    spec = fld.format_spec
    if spec in EPOCH_FORMATS:
        instant = as_instant(value)
        if instant is None:
            raise ValueError(f"{{{fld.expression}}}: {value!r} is not an instant (ISO-8601 or epoch seconds)")
        seconds = instant if isinstance(instant, int | float) else instant.timestamp()
        return str(int(seconds * 1000) if spec == "epoch_ms" else int(seconds))
    if spec and isinstance(value, str) and "%" in spec:  # an ISO-8601 text (a stored state) as a date
        parsed = as_instant(value)
        if isinstance(parsed, datetime):
            return parsed.strftime(spec)
    if isinstance(value, datetime | date) and spec:
        return value.strftime(spec)
    if spec:
        return format(value, spec)
    return format_text(value)


def as_instant(value: Any) -> datetime | int | float | None:
    """``value`` as an instant: a datetime (naive is UTC; a date is its midnight UTC; an ISO-8601 text), or a
    number as epoch seconds. None when it is none of these."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), UTC)
    if isinstance(value, str):
        text = value.strip()
        if not _ISO_DATE.match(text):  # "20240101" and "1700000000" are no instants here
            return None
        try:
            parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


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


def render_value(value: Any, context: dict[str, Any], *, omit_absent: bool = False) -> Any:
    """Render templates inside every string of a JSON-like value (a POST body). ``omit_absent``: a field
    of an object whose whole value is an absent template (``is_absent``) is left out."""
    if isinstance(value, str):
        return parse(value).render(context)
    if isinstance(value, dict):
        return {
            k: render_value(v, context, omit_absent=omit_absent)
            for k, v in value.items()
            if not (omit_absent and is_absent(v, context))
        }
    if isinstance(value, list):
        return [render_value(v, context, omit_absent=omit_absent) for v in value]
    return value


def is_absent(value: Any, context: dict[str, Any]) -> bool:
    """Whether ``value`` is one template field, of a variable that may be absent (``{incremental.start}``),
    whose value is absent: the parameter, header or body field that holds it is left out."""
    if not isinstance(value, str) or "{" not in value:
        return False
    parts = [p for p in parse(value).parts if p != ""]
    if len(parts) != 1 or not isinstance(parts[0], Field) or parts[0].root not in OPTIONAL_ROOTS:
        return False
    found = follow(context, parts[0].path).value
    return found is None or found is MISSING


def template_fields(value: Any) -> list[Field]:
    """Every field referenced by the templates inside a JSON-like value."""
    if isinstance(value, str):
        return list(parse(value).fields)
    if isinstance(value, dict):
        return [f for v in value.values() for f in template_fields(v)]
    if isinstance(value, list):
        return [f for v in value for f in template_fields(v)]
    return []

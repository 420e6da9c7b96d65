"""The one path syntax of source configs (SOURCES.md §0): a dotted path or an RFC 6901 JSON Pointer.

    data.items          keys, dot-separated
    items.0.id          a number indexes a list (``-1`` is the last element); on a mapping it is a key
    /@odata.nextLink    a leading ``/`` makes it a JSON Pointer: for keys that hold dots or slashes
    /links/next         (``~1`` is ``/`` and ``~0`` is ``~`` inside a key, as RFC 6901 says)

``parse_path`` checks the syntax (a malformed path is a validation error, never a silent miss) and
``JsonPath.find`` follows it, saying how far it got, so a caller can tell "the value is absent" from
"the response has another shape" and name what came back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

_INDEX = re.compile(r"-?\d+")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()


class PathError(ValueError):
    """A path that is not valid syntax; the message says why and shows the accepted forms."""


@dataclass(frozen=True)
class Found:
    """Where a lookup ended: the value (``MISSING`` when absent) and the container it stopped in."""

    value: Any
    depth: int  # segments resolved
    stopped_at: Any = None  # the value at ``depth`` when the next segment was absent

    @property
    def missing(self) -> bool:
        return self.value is MISSING


@dataclass(frozen=True)
class JsonPath:
    text: str
    parts: tuple[str, ...]

    def find(self, value: Any) -> Found:
        return follow(value, self.parts)

    def get(self, value: Any, default: Any = None) -> Any:
        """The value at this path, or ``default`` when any segment is absent (a JSON null is None)."""
        found = self.find(value)
        return default if found.missing else found.value

    def __str__(self) -> str:
        return self.text


def follow(value: Any, parts: tuple[str, ...]) -> Found:
    """Follow parsed ``parts`` through mappings and lists: how far it got, and what it found there."""
    for depth, part in enumerate(parts):
        if isinstance(value, dict):
            if part not in value:
                return Found(MISSING, depth, value)
            value = value[part]
        elif isinstance(value, list) and _INDEX.fullmatch(part):
            index = int(part)
            if not -len(value) <= index < len(value):
                return Found(MISSING, depth, value)
            value = value[index]
        else:
            return Found(MISSING, depth, value)
    return Found(value, len(parts))


@lru_cache(maxsize=1024)
def parse_path(text: str) -> JsonPath:
    """A dotted path or a JSON Pointer; ``PathError`` when it is neither."""
    if not isinstance(text, str) or not text:
        raise PathError("a path cannot be empty: write a dotted path (data.items) or a JSON Pointer (/data)")
    if text.startswith("/"):
        parts = []
        for raw in text[1:].split("/"):
            if re.search(r"~(?![01])", raw):
                raise PathError(
                    f"'{text}' is not a valid JSON Pointer: '~' must be followed by 0 (for '~') or 1"
                    " (for '/')"
                )
            parts.append(raw.replace("~1", "/").replace("~0", "~"))
        return JsonPath(text, tuple(parts))
    parts = text.split(".")
    if any(p == "" for p in parts):
        raise PathError(
            f"'{text}' has an empty segment; for a key that holds a dot use a JSON Pointer"
            f" such as '/{text.replace('~', '~0').replace('/', '~1')}'"
        )
    return JsonPath(text, tuple(parts))


def lookup(value: Any, path: str, default: Any = None) -> Any:
    """``parse_path(path).get(value, default)``."""
    return parse_path(path).get(value, default)


def describe(value: Any, limit: int = 120) -> str:
    """What a value is, for an error message: ``a list of 237 items``, ``an object with keys a, b``."""
    if isinstance(value, list):
        return f"a list of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, dict):
        if not value:
            return "an empty object"
        keys = ", ".join(list(value)[:8]) + (", …" if len(value) > 8 else "")
        return f"an object with keys {keys}"
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""What one page's request is and what a paginator reads of its response, and the filling of ``{page.*}``
templates and JSON body places that a paginator's values go into (pure, no I/O)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pullctl.config.paths import parse_path


@dataclass(frozen=True)
class PageRequest:
    """What to send for one page. ``params`` None: the URL is sent as given (a next URL has its own query)."""

    url: str
    params: Mapping[str, str] | None
    number: int = 1
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    page: Mapping[str, Any] = field(default_factory=dict)  # {page.number}, {page.offset}, {page.cursor}

    def filled(self) -> PageRequest:
        """The request with ``{page.*}`` templates filled from ``page``; a value that is only an absent
        template (``cursor: "{page.cursor}"`` before there is one) is left out."""
        if not self.page:
            return self
        return replace(
            self,
            params=None if self.params is None else fill(self.params, self.page),
            headers=fill(self.headers, self.page),
            body=fill(self.body, self.page),
        )


@dataclass(frozen=True)
class PageView:
    """What a paginator reads of a response: the parsed body, the URL that answered, Link's rel="next", the
    response headers (``cursor_from: header``)."""

    data: Any
    url: str
    next_link: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


def fill(value: Any, page: Mapping[str, Any]) -> Any:
    """``value`` (a string, mapping or list) with ``{page.KEY}`` filled from ``page``; a mapping value that is
    only an absent template is left out."""
    if isinstance(value, str):
        if "{page." not in value:
            return value
        for key, filled in page.items():
            value = value.replace(f"{{page.{key}}}", "" if filled is None else str(filled))
        return value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            absent = (
                isinstance(v, str)
                and v.startswith("{page.")
                and v.endswith("}")
                and page.get(v[6:-1]) is None
            )
            if not absent:
                out[k] = fill(v, page)
        return out
    if isinstance(value, list):
        return [fill(v, page) for v in value]
    return value


def set_at(body: Any, path: str, value: Any) -> Any:
    """A copy of the JSON ``body`` with ``value`` at the dotted ``path`` (mappings created when missing);
    None removes the key."""
    out = copy.deepcopy(body) if isinstance(body, dict) else {}
    parts = list(parse_path(path).parts)
    node = out
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
    return out

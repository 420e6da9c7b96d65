"""What a response means (``response_actions``, SOURCES.md §5): the first rule that matches, pure.

A rule has ``status`` (one or a list) and at most one more condition: a ``body_path`` value compared with
``equals`` / ``in`` / ``not_in`` / ``exists``, ``body_contains`` on the body's text, or a ``header`` with
``equals`` / ``in``. Body values compare as JSON values (40100 matches the number 40100, not the string
"40100", and ``true`` is not 1); header values are strings, and a number in the rule matches its decimal
text. A value that is absent matches none of ``equals``, ``in`` and ``not_in``: only ``exists`` asks about it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pullctl.config.models import ResponseAction
from pullctl.config.paths import parse_path


@dataclass(frozen=True)
class Matched:
    rule: ResponseAction
    index: int  # in response_actions, for messages
    message: str | None  # the API's own message (message_path), when the rule names one


def match(
    rules: Sequence[ResponseAction], status: int, headers: Mapping[str, str], body: bytes
) -> Matched | None:
    """The first rule ``status``, ``headers`` and ``body`` satisfy, or None."""
    parsed: Any = _UNPARSED
    for index, rule in enumerate(rules):
        statuses = rule.statuses()
        if statuses is not None and status not in statuses:
            continue
        if rule.body_path is not None:
            if parsed is _UNPARSED:
                parsed = _json(body)
            if not _compares(rule, parse_path(rule.body_path).find(parsed)):
                continue
        elif rule.body_contains is not None:
            if rule.body_contains not in body.decode("utf-8", "replace"):
                continue
        elif rule.header is not None:
            value = headers.get(rule.header)
            wanted = [rule.equals] if "equals" in rule.model_fields_set else (rule.in_ or [])
            if value is None or value not in [_text(w) for w in wanted]:
                continue
        message = None
        if rule.message_path is not None:
            if parsed is _UNPARSED:
                parsed = _json(body)
            found = parse_path(rule.message_path).get(parsed)
            message = found if isinstance(found, str) else (json.dumps(found) if found is not None else None)
        return Matched(rule, index, message)
    return None


_UNPARSED = object()


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return _UNPARSED  # not JSON: no body_path matches


def _compares(rule: ResponseAction, found: Any) -> bool:
    given = rule.model_fields_set
    if "exists" in given:
        return (not found.missing) == rule.exists
    if found.missing:
        return False
    value = found.value
    if "equals" in given:
        return _same(value, rule.equals)
    if "in_" in given:
        return any(_same(value, w) for w in rule.in_ or [])
    return not any(_same(value, w) for w in rule.not_in or [])


def _same(a: Any, b: Any) -> bool:
    """JSON equality: a bool is not a number, and 1 equals 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b) and (isinstance(a, int | float) == isinstance(b, int | float))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

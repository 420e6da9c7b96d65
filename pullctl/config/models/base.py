"""Shared pieces of the config models: the strict base model, ``FieldProblem``, path and URL checks."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

from pullctl.config.paths import PathError, parse_path

SOURCE_ID_RE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
IDENT_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"
DEFAULT_RETRY_STATUS = [408, 425, 429, 500, 502, 503, 504]
MAX_HELD_BYTES = 1024**3  # a body held in memory (JSON, XML, a page of rows kept whole)
MAX_STREAMED_BYTES = 1024**4  # rows streamed into split records
PATH_HELP = "a dotted path (data.items, items.-1.id) or a JSON Pointer (/@odata.nextLink)"


def check_path(value: str | None) -> str | None:
    """A ``*_path`` field's validator (SOURCES.md §0): malformed syntax is an error, never a silent miss."""
    if value is not None:
        try:
            parse_path(value)
        except PathError as exc:
            raise ValueError(str(exc)) from None
    return value


def check_url(value: str) -> str:
    """An absolute http(s) URL whose host is literal (templates may follow it, never form it)."""
    head = value.split("{", 1)[0]
    if not re.match(r"^https?://[^/{}]+", value) or ("{" in head.split("://", 1)[-1].split("/", 1)[0]):
        raise ValueError(
            f"must be an absolute http(s) URL with a literal host, e.g. https://api.example.com/v1"
            f" (got {value!r})"
        )
    return value


class FieldProblem(ValueError):
    """A rule broken by ``field`` of the model being validated: the loader points at that field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"@{field}@{message}")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

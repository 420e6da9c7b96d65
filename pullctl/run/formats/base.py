"""What every body format shares: ``FormatError`` and the ``Parser`` interface."""

from __future__ import annotations

from typing import Any, ClassVar


class FormatError(Exception):
    """The body cannot be read as the configured format (or is larger than allowed); the message says why."""


class Parser:
    """Bytes (decompressed) in, records out. ``rows``: the body is a list of records."""

    rows: ClassVar[bool] = True

    def feed(self, data: bytes) -> list[Any]:
        raise NotImplementedError

    def close(self) -> list[Any]:
        raise NotImplementedError

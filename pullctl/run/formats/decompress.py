"""Decompression a step at a time: ``Content-Encoding`` (gzip, deflate) and the body's own compression
(``compression``: auto = gzip magic bytes, gzip, none), at most ``PIECE`` bytes per step.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Literal

from pullctl.run.formats.base import FormatError

GZIP_MAGIC = b"\x1f\x8b"
PIECE = 64 * 1024  # the most one decompression step may produce


class Inflater:
    """gzip (every member of a multi-member file) or deflate (zlib-wrapped or raw, as browsers accept it),
    at most ``PIECE`` bytes of output per step."""

    def __init__(self, kind: Literal["gzip", "deflate"], what: str) -> None:
        self.kind, self.what = kind, what
        self._raw_fallback = kind == "deflate"
        self._d = zlib.decompressobj(31 if kind == "gzip" else 15)
        self._fed = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data:
            self._fed = True
            try:
                out = self._d.decompress(data, PIECE)
            except zlib.error as exc:
                if self._raw_fallback:  # "deflate" without the zlib wrapper
                    self._raw_fallback = False
                    self._d = zlib.decompressobj(-15)
                    continue
                raise FormatError(f"{self.what} is not valid {self.kind} data: {exc}") from None
            self._raw_fallback = False
            if out:
                yield out
            data = self._d.unconsumed_tail
            if self._d.eof and self._d.unused_data:  # another gzip member follows
                data = self._d.unused_data
                self._d = zlib.decompressobj(31)

    def close(self) -> Iterator[bytes]:
        out = self._d.flush()
        if out:
            yield out
        if self._fed and not self._d.eof:
            raise FormatError(f"{self.what} ends early: the {self.kind} stream is truncated")


class Sniff:
    """``compression: auto`` or ``gzip``: the first two bytes say whether the body is gzip."""

    def __init__(self, compression: str) -> None:
        self.compression = compression
        self.head = b""
        self.inflater: Inflater | None = None
        self.decided = compression == "none"

    def feed(self, data: bytes) -> Iterator[bytes]:
        if not self.decided:
            self.head += data
            if len(self.head) < len(GZIP_MAGIC):
                return
            data, self.head = self.head, b""
            self._decide(data)
        if self.inflater is not None:
            yield from self.inflater.feed(data)
        elif data:
            yield data

    def _decide(self, data: bytes) -> None:
        self.decided = True
        if data.startswith(GZIP_MAGIC):
            self.inflater = Inflater("gzip", "the gzip body")
        elif self.compression == "gzip":
            raise FormatError(
                f"compression: gzip, but the body does not start with gzip's magic bytes 1f 8b"
                f" (it starts {data[:16]!r}); set compression: auto or none"
            )

    def close(self) -> Iterator[bytes]:
        if not self.decided:
            data, self.head = self.head, b""
            if data:
                self._decide(data)
                yield from self.feed(data)
        if self.inflater is not None:
            yield from self.inflater.close()


def content_decoder(content_encoding: str) -> Inflater | None:
    """The HTTP ``Content-Encoding`` layer (what pullctl asks for: gzip, deflate); identity is None."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return Inflater("gzip", "the body (Content-Encoding: gzip)")
    if encoding == "deflate":
        return Inflater("deflate", "the body (Content-Encoding: deflate)")
    raise FormatError(
        f"Content-Encoding {content_encoding!r} is not supported (pullctl asks for gzip or deflate)"
    )

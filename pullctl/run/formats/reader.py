"""One response body, raw chunks in, records out: decoded, decompressed, bounded, parsed (``BodyReader``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pullctl.config.models import ResponseFormat
from pullctl.run.formats.base import FormatError, Parser
from pullctl.run.formats.decompress import Sniff, content_decoder
from pullctl.run.formats.parsers import Delimited, JsonLines, JsonWhole
from pullctl.run.formats.xml_dict import Xml

_DEFAULT_RESPONSE = ResponseFormat()


def parser(response: ResponseFormat) -> Parser:
    """A fresh parser for one body of ``response.format``."""
    fmt = response.format
    if fmt == "jsonl":
        return JsonLines()
    if fmt in ("csv", "tsv"):
        options = response.csv
        delimiter = options.delimiter or ("\t" if fmt == "tsv" else ",")
        quote = options.quote if options.quote is not None else ("" if fmt == "tsv" else '"')
        return Delimited(delimiter, quote, options.header)
    if fmt == "xml":
        return Xml()
    return JsonWhole()


# -- the whole pipeline -------------------------------------------------------------------------------


class BodyReader:
    """One response body: decoded, decompressed, bounded, parsed. ``feed`` raw chunks, then ``close``."""

    def __init__(self, response: ResponseFormat | None, content_encoding: str, cap: int) -> None:
        response = response or _DEFAULT_RESPONSE
        self.format = response.format
        self.cap = cap
        self.size = 0  # decompressed bytes so far
        self._encoding = content_decoder(content_encoding)
        self._sniff = Sniff(response.compression)
        self._parser = parser(response)

    @property
    def rows(self) -> bool:
        return self._parser.rows

    @property
    def compressed(self) -> bool:
        return self._encoding is not None or self._sniff.inflater is not None

    def feed(self, raw: bytes) -> list[Any]:
        pieces = self._encoding.feed(raw) if self._encoding is not None else iter((raw,))
        return self._parse(self._sniff.feed(piece) for piece in pieces)

    def close(self) -> list[Any]:
        tail = self._encoding.close() if self._encoding is not None else iter(())
        out = self._parse(self._sniff.feed(piece) for piece in tail)
        out.extend(self._parse(iter((self._sniff.close(),))))
        out.extend(self._parser.close())
        return out

    def _parse(self, groups: Iterator[Iterator[bytes]]) -> list[Any]:
        out: list[Any] = []
        for group in groups:
            for piece in group:
                self.size += len(piece)
                if self.size > self.cap:
                    shrunk = " once decompressed" if self.compressed else ""
                    raise FormatError(
                        f"the body is larger than max_response_bytes={self.cap}{shrunk}; raise"
                        " request.max_response_bytes if that is expected"
                    )
                out.extend(self._parser.feed(piece))
        return out

"""Non-JSON bodies (SOURCES.md §8): bytes in, JSON values out, a chunk at a time, so a 2 GB export is
never held whole.

    raw chunks ─▶ Content-Encoding (gzip, deflate) ─▶ the body's own compression (``compression``:
    auto = gzip magic bytes, gzip, none) ─▶ the size budget (``max_response_bytes``, counted on the
    DECOMPRESSED bytes) ─▶ one parser per format ─▶ records

``BodyReader.feed(chunk)`` returns the records that chunk completed; ``close()`` the rest. Decompression
goes through ``zlib.decompressobj`` with ``max_length``, so a gzip bomb inflates 64 KiB at a time and fails
at the budget, never expanding in memory first. Each parser is small and pure:

    =======  ==========================================================================================
    format   what comes out
    =======  ==========================================================================================
    json     the whole body as one JSON value (held: JSON cannot be cut into records before it is read)
    jsonl    one record per non-blank line; a line that is not JSON fails naming its line number
    csv      one object per row, keyed by the header line (``csv.header``), values as strings; quoted
             fields may hold delimiters, quotes and newlines; a UTF-8 BOM is dropped
    tsv      csv with a tab and, by default, no quoting (IANA TSV: fields hold no tabs or newlines)
    xml      the document as a dict in xmltodict's shape (``{"root": {"@attr": .., "child": [..],
             "#text": ..}}``); parsed by the standard library's expat through ``defusedxml``, so entity
             declarations (billion laughs) and external entities are refused
    =======  ==========================================================================================

A header-only CSV or TSV is zero records, not an error; an empty JSONL body too. An empty CSV body (not
even a header) fails, as an empty JSON body does.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import zlib
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from pullctl.config.models import ResponseFormat

GZIP_MAGIC = b"\x1f\x8b"
PIECE = 64 * 1024  # the most one decompression step may produce
ROW_FORMATS = ("jsonl", "csv", "tsv")  # the body is a list of records, parsed as it arrives
_DEFAULT_RESPONSE = ResponseFormat()


class FormatError(Exception):
    """The body cannot be read as the configured format (or is larger than allowed); the message says why."""


# -- decompression ------------------------------------------------------------------------------------


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


class _Sniff:
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


# -- parsers ------------------------------------------------------------------------------------------


class Parser:
    """Bytes (decompressed) in, records out. ``rows``: the body is a list of records."""

    rows: ClassVar[bool] = True

    def feed(self, data: bytes) -> list[Any]:
        raise NotImplementedError

    def close(self) -> list[Any]:
        raise NotImplementedError


class JsonWhole(Parser):
    rows = False

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def feed(self, data: bytes) -> list[Any]:
        self._parts.append(data)
        return []

    def close(self) -> list[Any]:
        body = b"".join(self._parts)
        if not body.strip():
            raise FormatError("empty body, expected JSON")
        try:
            return [json.loads(body)]
        except ValueError as exc:
            raise FormatError(
                f"not JSON: {exc}; it starts {body[:80].decode('utf-8', 'replace')!r}"
            ) from None


class JsonLines(Parser):
    def __init__(self) -> None:
        self._tail: list[bytes] = []
        self._line = 0

    def feed(self, data: bytes) -> list[Any]:
        if b"\n" not in data:
            self._tail.append(data)
            return []
        lines = data.split(b"\n")
        if self._tail:
            lines[0] = b"".join([*self._tail, lines[0]])
        self._tail = [lines.pop()]
        return [record for line in lines if (record := self._parse(line)) is not _BLANK]

    def close(self) -> list[Any]:
        last = b"".join(self._tail)
        self._tail = []
        record = self._parse(last)
        return [] if record is _BLANK else [record]

    def _parse(self, line: bytes) -> Any:
        self._line += 1
        if self._line == 1:
            line = line.removeprefix(codecs.BOM_UTF8)
        line = line.strip()
        if not line:
            return _BLANK
        try:
            return json.loads(line)
        except ValueError as exc:
            start = line[:60].decode("utf-8", "replace")
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise FormatError(f"line {self._line} is not JSON ({reason}); it starts {start!r}") from None


_BLANK = object()


class Delimited(Parser):
    """CSV or TSV, row by row. A chunk is cut after its last newline that lies outside quotes (a quote
    count per chunk tells, C-speed ``split``), so a quoted field that holds newlines is never cut."""

    def __init__(self, delimiter: str, quote: str, header: bool) -> None:
        self.delimiter, self.quote, self.header = delimiter, quote, header
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._pending: list[str] = []
        self._quoted = False  # inside a quoted field at the end of what was fed
        self._lines = 0  # lines parsed so far (for the line numbers in errors)
        self._columns: list[str] | None = None

    def feed(self, data: bytes) -> list[Any]:
        text = self._text(data)
        cut = self._cut(text)
        if not cut:
            self._pending.append(text)
            return []
        complete = "".join([*self._pending, text[:cut]])
        self._pending = [text[cut:]]
        return self._rows(complete)

    def close(self) -> list[Any]:
        rest = "".join([*self._pending, self._text(b"", final=True)])
        self._pending = []
        if self._quoted:
            raise FormatError(f"the body ends inside a quoted field (one opened after line {self._lines})")
        rows = self._rows(rest) if rest else []
        if self.header and self._columns is None:
            raise FormatError("empty body: expected at least a header line")
        return rows

    def _text(self, data: bytes, final: bool = False) -> str:
        try:
            return self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            raise FormatError(f"not UTF-8 after line {self._lines}: {exc.reason}") from None

    def _cut(self, text: str) -> int:
        """The index just past the last record-ending newline of ``text`` (0: none), tracking quotes."""
        if not self.quote or self.quote not in text:
            return 0 if self._quoted else text.rfind("\n") + 1
        parts = text.split(self.quote)
        cut, pos, quoted = 0, 0, self._quoted
        for part in parts:
            if not quoted:
                newline = part.rfind("\n")
                if newline >= 0:
                    cut = pos + newline + 1
            pos += len(part) + 1
            quoted = not quoted
        self._quoted ^= (len(parts) - 1) % 2 == 1
        return cut

    def _rows(self, text: str) -> list[Any]:
        quoting = {"quotechar": self.quote} if self.quote else {"quoting": csv.QUOTE_NONE}
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=self.delimiter, strict=True, **quoting)
        out: list[Any] = []
        try:
            for fields in reader:
                line = self._lines + reader.line_num
                if not fields:
                    continue
                if not self.header:
                    out.append(fields)
                elif self._columns is None:
                    self._columns = self._header(fields, line)
                elif len(fields) != len(self._columns):
                    raise FormatError(
                        f"line {line} has {len(fields)} fields, the header has {len(self._columns)}"
                    )
                else:
                    out.append(dict(zip(self._columns, fields, strict=True)))
        except csv.Error as exc:
            raise FormatError(f"line {self._lines + reader.line_num}: {exc}") from None
        self._lines += reader.line_num
        return out

    @staticmethod
    def _header(fields: list[str], line: int) -> list[str]:
        seen: dict[str, int] = {}
        for number, name in enumerate(fields, 1):
            if name in seen:
                raise FormatError(
                    f"the header (line {line}) names column {name!r} twice (columns {seen[name]} and"
                    f" {number}): one would hide the other"
                )
            seen[name] = number
        return fields


class Xml(Parser):
    """The document as a dict, built from the parser's events (no element tree is kept)."""

    rows = False

    def __init__(self) -> None:
        from defusedxml.ElementTree import DefusedXMLParser

        self._tree = _DictBuilder()
        self._parser = DefusedXMLParser(target=self._tree)

    def feed(self, data: bytes) -> list[Any]:
        self._guarded(self._parser.feed, data)
        return []

    def close(self) -> list[Any]:
        self._guarded(self._parser.close)
        return [self._tree.root]

    @staticmethod
    def _guarded(call: Any, *args: Any) -> None:
        from xml.etree.ElementTree import ParseError

        from defusedxml import EntitiesForbidden, ExternalReferenceForbidden

        try:
            call(*args)
        except EntitiesForbidden as exc:
            raise FormatError(
                f"XML entity declarations are refused (entity {exc.name!r}): expanding entities (a 'billion"
                " laughs' payload) could exhaust memory"
            ) from None
        except ExternalReferenceForbidden as exc:
            raise FormatError(f"XML external entity references are refused ({exc.sysid!r})") from None
        except ParseError as exc:
            raise FormatError(f"not well-formed XML: {exc}") from None


class _DictBuilder:
    """ElementTree parser target -> xmltodict's shape: attributes as ``@name``, text as ``#text`` beside
    attributes or children (else the element is its text, or null when empty), repeated children as a
    list; namespaced names as ``prefix:name`` with the document's own prefixes."""

    def __init__(self) -> None:
        self.root: dict[str, Any] | None = None
        self._stack: list[tuple[str, dict[str, Any], list[str]]] = []
        self._prefixes: dict[str, str] = {}
        self._declared: list[tuple[str, str]] = []

    def start_ns(self, prefix: str, uri: str) -> None:
        self._prefixes[uri] = prefix
        self._declared.append((prefix, uri))

    def _name(self, tag: str) -> str:
        if not tag.startswith("{"):
            return tag
        uri, _, local = tag[1:].partition("}")
        prefix = self._prefixes.get(uri, "")
        return f"{prefix}:{local}" if prefix else local

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        node = {f"@xmlns:{p}" if p else "@xmlns": uri for p, uri in self._declared}
        self._declared = []
        node.update({f"@{self._name(k)}": v for k, v in attrs.items()})
        self._stack.append((self._name(tag), node, []))

    def data(self, text: str) -> None:
        self._stack[-1][2].append(text)

    def end(self, tag: str) -> None:
        name, node, texts = self._stack.pop()
        text = "".join(texts).strip()
        value: Any
        if node:
            if text:
                node["#text"] = text
            value = node
        else:
            value = text or None
        if not self._stack:
            self.root = {name: value}
            return
        parent = self._stack[-1][1]
        if name not in parent:
            parent[name] = value
        elif isinstance(parent[name], list):
            parent[name].append(value)
        else:
            parent[name] = [parent[name], value]

    def close(self) -> dict[str, Any] | None:
        return self.root


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
        self._sniff = _Sniff(response.compression)
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

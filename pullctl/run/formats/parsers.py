"""The text parsers: a whole JSON body, JSON lines, and CSV/TSV row by row."""

from __future__ import annotations

import codecs
import csv
import io
import json
from typing import Any

from pullctl.run.formats.base import FormatError, Parser


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

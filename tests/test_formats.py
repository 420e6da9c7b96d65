"""The body parsers of pullctl/run/formats.py: a table of bodies and what each becomes, fed whole and one
byte at a time (every cut a chunk boundary can make), and the errors each format names."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import pytest

from pullctl.config.models import ResponseFormat
from pullctl.run.formats import BodyReader, FormatError

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<lolz>&lol3;</lolz>
"""

# (id, response block, body, records)
CASES: list[tuple[str, dict[str, Any], bytes, list[Any]]] = [
    ("json", {}, b'{"a": [1, 2]}', [{"a": [1, 2]}]),
    ("jsonl", {"format": "jsonl"}, b'{"a": 1}\n\n{"a": 2}\r\n[3]', [{"a": 1}, {"a": 2}, [3]]),
    ("jsonl-bom-trailing-newline", {"format": "jsonl"}, b'\xef\xbb\xbf{"a": 1}\n', [{"a": 1}]),
    ("jsonl-empty", {"format": "jsonl"}, b"", []),
    (
        "csv",
        {"format": "csv"},
        b"id,name\n1,ann\n2,bob\n",
        [{"id": "1", "name": "ann"}, {"id": "2", "name": "bob"}],
    ),
    (
        "csv-quoted-newlines-and-bom",
        {"format": "csv"},
        '\ufeffid,note\r\n1,"two\r\nlines, and a ""quote"""\r\n2,plain\r\n'.encode(),
        [{"id": "1", "note": 'two\r\nlines, and a "quote"'}, {"id": "2", "note": "plain"}],
    ),
    ("csv-no-final-newline", {"format": "csv"}, b"a,b\n1,2", [{"a": "1", "b": "2"}]),
    ("csv-no-header", {"format": "csv", "csv": {"header": False}}, b"1,2\n3,4\n", [["1", "2"], ["3", "4"]]),
    (
        "csv-semicolon",
        {"format": "csv", "csv": {"delimiter": ";"}},
        "a;b\nü;2\n".encode(),
        [{"a": "ü", "b": "2"}],
    ),
    ("tsv", {"format": "tsv"}, b'sku\ttitle\nA1\t12" pipe\n', [{"sku": "A1", "title": '12" pipe'}]),
    ("tsv-header-only", {"format": "tsv"}, b"sku\ttitle\n", []),
    ("tsv-quoted", {"format": "tsv", "csv": {"quote": '"'}}, b'a\tb\n"x\ty"\t2\n', [{"a": "x\ty", "b": "2"}]),
    (
        "xml",
        {"format": "xml"},
        b'<?xml version="1.0"?><r xmlns:p="urn:p" v="2"><item id="1">a</item><item id="2"/>'
        b"<p:note>hi</p:note><empty/></r>",
        [
            {
                "r": {
                    "@xmlns:p": "urn:p",
                    "@v": "2",
                    "item": [{"@id": "1", "#text": "a"}, {"@id": "2"}],
                    "p:note": "hi",
                    "empty": None,
                }
            }
        ],
    ),
]


def read(
    response: dict[str, Any], body: bytes, *, step: int | None = None, cap: int = 10**6, encoding: str = ""
) -> list[Any]:
    reader = BodyReader(ResponseFormat.model_validate(response), encoding, cap)
    out: list[Any] = []
    size = step or max(len(body), 1)
    for start in range(0, len(body), size):
        out.extend(reader.feed(body[start : start + size]))
    out.extend(reader.close())
    return out


@pytest.mark.parametrize(("response", "body", "records"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_body_becomes_its_records_however_it_is_cut(
    response: dict[str, Any], body: bytes, records: list[Any]
) -> None:
    assert read(response, body) == records
    assert read(response, body, step=1) == records
    assert read(response, gzip.compress(body), step=7) == records  # compression: auto sees the magic bytes
    assert read(response, gzip.compress(body), encoding="gzip", step=5) == records  # Content-Encoding
    assert read(response, zlib.compress(body), encoding="deflate") == records


# (id, response block, body, message)
ERRORS: list[tuple[str, dict[str, Any], bytes, str]] = [
    (
        "json-bad",
        {},
        b"{nope",
        "not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1); it starts '{nope'",
    ),
    ("json-empty", {}, b" ", "empty body, expected JSON"),
    (
        "jsonl-broken-line",
        {"format": "jsonl"},
        b'{"a": 1}\n{"a": 2}\n{"a": \n',
        "line 3 is not JSON (Expecting value); it starts '{\"a\":'",
    ),
    ("csv-short-row", {"format": "csv"}, b"a,b\n1,2\n3\n", "line 3 has 1 fields, the header has 2"),
    (
        "csv-duplicate-column",
        {"format": "csv"},
        b"id,x,id\n",
        "the header (line 1) names column 'id' twice (columns 1 and 3): one would hide the other",
    ),
    ("csv-empty", {"format": "csv"}, b"", "empty body: expected at least a header line"),
    (
        "csv-open-quote",
        {"format": "csv"},
        b'a\n"never closed\n',
        "the body ends inside a quoted field (one opened after line 1)",
    ),
    ("csv-not-utf8", {"format": "csv"}, b"a\n\xff\n", "not UTF-8 after line 0: invalid start byte"),
    (
        "gzip-required",
        {"compression": "gzip"},
        b"{}",
        "compression: gzip, but the body does not start with gzip's magic bytes 1f 8b (it starts b'{}'); set compression: auto or none",
    ),
    (
        "gzip-truncated",
        {},
        gzip.compress(b'{"a": 1}' * 100)[:30],
        "the gzip body ends early: the gzip stream is truncated",
    ),
    (
        "xml-billion-laughs",
        {"format": "xml"},
        BILLION_LAUGHS,
        "XML entity declarations are refused (entity 'lol'): expanding entities (a 'billion laughs' payload) could exhaust memory",
    ),
    (
        "xml-external-entity",
        {"format": "xml"},
        b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
        "XML entity declarations are refused (entity 'x'): expanding entities (a 'billion laughs' payload) could exhaust memory",
    ),
    (
        "xml-malformed",
        {"format": "xml"},
        b"<a><b></a>",
        "not well-formed XML: mismatched tag: line 1, column 8",
    ),
]


@pytest.mark.parametrize(("response", "body", "message"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_a_body_that_is_not_its_format_fails_naming_why(
    response: dict[str, Any], body: bytes, message: str
) -> None:
    with pytest.raises(FormatError) as caught:
        read(response, body, step=3)
    assert str(caught.value) == message


def test_the_size_budget_counts_decompressed_bytes_a_piece_at_a_time() -> None:
    bomb = gzip.compress(b"0" * 20_000_000)  # ~20 KB that inflates to 20 MB
    assert len(bomb) < 100_000
    reader = BodyReader(ResponseFormat(format="csv"), "", 1024 * 1024)
    with pytest.raises(FormatError) as caught:
        reader.feed(bomb)
    assert str(caught.value) == (
        "the body is larger than max_response_bytes=1048576 once decompressed; raise request.max_response_bytes"
        " if that is expected"
    )
    assert reader.size <= 1024 * 1024 + 64 * 1024  # it stopped one piece past the budget


def test_multi_member_gzip_is_read_whole() -> None:
    body = gzip.compress(b"a\n1\n") + gzip.compress(b"2\n")
    assert read({"format": "csv"}, body) == [{"a": "1"}, {"a": "2"}]


def test_an_unsupported_content_encoding_is_named() -> None:
    with pytest.raises(
        FormatError, match=r"^Content-Encoding 'br' is not supported \(pullctl asks for gzip or deflate\)$"
    ):
        BodyReader(None, "br", 1024)

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

The package: ``decompress`` (both compression layers), ``parsers`` (json, jsonl, csv, tsv), ``xml_dict``
(xml), ``reader`` (``BodyReader``, the whole pipeline) and ``base`` (``FormatError``, ``Parser``).
"""

from pullctl.run.formats.base import FormatError, Parser
from pullctl.run.formats.decompress import GZIP_MAGIC, PIECE, Inflater, content_decoder
from pullctl.run.formats.parsers import Delimited, JsonLines, JsonWhole
from pullctl.run.formats.reader import BodyReader, parser
from pullctl.run.formats.xml_dict import Xml

__all__ = [
    "GZIP_MAGIC",
    "PIECE",
    "BodyReader",
    "Delimited",
    "FormatError",
    "Inflater",
    "JsonLines",
    "JsonWhole",
    "Parser",
    "Xml",
    "content_decoder",
    "parser",
]

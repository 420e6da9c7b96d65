"""Canonical JSON and its sha256: the one way pullctl hashes data.

Sorted keys, no spaces, UTF-8 (not ``\\u`` escapes): the same value always gives the same bytes. Used
for stored documents' content hashes, config hashes and rendered manifests' hashes; their output is
pinned by ``tests/test_canonical.py`` (a stored content hash must never change between versions).
Values JSON has no type for (a YAML date in a config) are written as ``str(value)``.

The bytes are the standard library's (``stdlib_canonical_json``). orjson writes them about 14x faster
(3 us instead of 43 us for a 2 KB response; the hash was 9 % of a run's CPU in bench/run_bench.py) and is
used whenever its output is provably the same. It is not used for a type it would write otherwise (a
datetime, a subclass of a JSON type, a dataclass, a dict key that is not a string, an int beyond 64 bits:
it raises, and the standard library writes the value), nor for floats it writes otherwise (NaN and the
infinities, which it writes as ``null``; values below 1e-4: ``0.00001`` for ``1e-05``, ``1e-7`` for
``1e-07``). Every such float leaves ``null``, ``0.0000`` or ``e-`` in orjson's output, so output holding
any of them is written again by the standard library (a string that holds them costs only the time).
``tests/test_canonical.py`` compares both encoders over generated values. Enum members are the one type
orjson writes natively that does not match; no hashed value holds one (they come from JSON, YAML and the
response-format parsers).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson

_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


def canonical_json(value: Any) -> bytes:
    try:
        out = orjson.dumps(value, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: a value it does not write as the standard library does
        return stdlib_canonical_json(value)
    if b"null" in out or b"0.0000" in out or b"e-" in out:  # a float it may write otherwise (see above)
        return stdlib_canonical_json(value)
    return out


def stdlib_canonical_json(value: Any) -> bytes:
    """The definition of the canonical bytes (``canonical_json`` is a faster way to the same)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def canonical_hash(value: Any) -> str:
    """sha256 hex of ``canonical_json(value)``."""
    return hashlib.sha256(canonical_json(value)).hexdigest()

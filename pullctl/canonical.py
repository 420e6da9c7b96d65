"""Canonical JSON and its sha256: the one way pullctl hashes data.

Sorted keys, no spaces, UTF-8 (not ``\\u`` escapes): the same value always gives the same bytes. Used
for stored documents' content hashes, config hashes and rendered manifests' hashes; their output is
pinned by ``tests/test_canonical.py`` (a stored content hash must never change between versions).
Values JSON has no type for (a YAML date in a config) are written as ``str(value)``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def canonical_hash(value: Any) -> str:
    """sha256 hex of ``canonical_json(value)``."""
    return hashlib.sha256(canonical_json(value)).hexdigest()

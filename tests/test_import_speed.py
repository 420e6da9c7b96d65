"""`pullctl --help` and `pullctl validate` must not import the heavy clients."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import EXAMPLES

HEAVY = ["httpx", "pymongo", "kubernetes", "mcp", "uvicorn", "aiohttp", "starlette"]
PROBE = """
import sys
from pullctl.cli.main import app
try:
    app(sys.argv[1:])
except SystemExit as e:
    code = e.code
print(sorted(m for m in {heavy!r} if m in sys.modules))
"""


@pytest.mark.parametrize("args", [["--help"], ["validate", str(EXAMPLES)], ["list", "-c", str(EXAMPLES)]])
def test_no_heavy_imports(args: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"

"""The table of invalid configs: each prints exactly its located messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from pullctl.config.loader import load_paths
from tests.config_cases import INVALID


@pytest.mark.parametrize(
    ("text", "target", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_config_is_located(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, target: str, expected: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("case.yaml").write_text(text)
    result = load_paths(["case.yaml"], target=target)  # type: ignore[arg-type]
    assert [str(i) for i in result.errors] == expected
    assert result.sources == [] or len(result.sources) < text.count("source_id")

"""A large static list is held once and located lazily: the loaded source's raw config and its model share
the list, and a problem deep inside it is located exactly as one near the top."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pullctl.config import yaml_reader
from pullctl.config.loader import load_paths, load_text
from tests.config_cases import BASE, INVALID
from tests.test_loader_properties import config_like, values


def _items(count: int) -> str:
    return (
        BASE
        + "  iteration:\n    foreach: x\n    items:\n"
        + "".join(f"      - {{id: r{i}}}\n" for i in range(count))
    )


def test_static_items_are_held_once() -> None:
    result = load_text(_items(3), "case.yaml")
    (src,) = result.sources
    assert src.config.ingestion.iteration is not None
    assert src.raw["ingestion"]["iteration"]["items"] is src.config.ingestion.iteration.items
    assert src.config.ingestion.iteration.items == [{"id": "r0"}, {"id": "r1"}, {"id": "r2"}]


@pytest.mark.parametrize(
    ("text", "target", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_positions_read_again_locate_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, target: str, expected: list[str]
) -> None:
    """No list element noted as it is read: every located message comes from the document read again."""
    monkeypatch.setattr(yaml_reader, "NOTED_ELEMENTS", 0)
    monkeypatch.chdir(tmp_path)
    Path("case.yaml").write_text(text)
    result = load_paths(["case.yaml"], target=target)  # type: ignore[arg-type]
    assert [str(i) for i in result.errors] == expected


def test_a_problem_deep_in_a_large_list_names_its_line() -> None:
    count = yaml_reader.NOTED_ELEMENTS + 500
    lines = _items(count).splitlines(keepends=True)
    first = len(lines) - count + 1  # the line of items[0]
    lines[first - 1 + 1200] = "      - plain\n"
    lines[first - 1 + 1300] = "      - {id: r1300, id: again}\n"
    result = load_text("".join(lines), "case.yaml")
    assert [str(i) for i in result.issues] == [
        f"case.yaml:{first + 1300}:21: ingestion.iteration.items[1300].id: duplicate key 'id'"
        f" (first defined at line {first + 1300})"
    ]
    del lines[first - 1 + 1300]
    result = load_text("".join(lines), "case.yaml")
    assert [str(i) for i in result.issues] == [
        f"case.yaml:{first + 1200}:9: ingestion.iteration.items[1200]: must be a valid dictionary (got 'plain')"
    ]


def test_sources_past_the_noted_ones_are_located(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sources in a ``sources:`` list past the noted elements, in a file's second document."""
    monkeypatch.setattr(yaml_reader, "NOTED_ELEMENTS", 1)

    def source(source_id: str, extra: str = "") -> str:
        text = BASE.replace("weather-api", source_id) + extra
        return "  - " + text.rstrip("\n").replace("\n", "\n    ") + "\n"

    sources = source("a") + source("b") + source("a") + source("c", "  timeout: x\n")
    result = load_text(BASE.replace("weather-api", "z") + "---\nsources:\n" + sources, "case.yaml")
    assert [str(i) for i in result.issues] == [
        "case.yaml:28:7: sources[3].ingestion.timeout: unknown field 'timeout'; did you mean 'timezone'?"
    ]
    assert [(s.source_id, s.line) for s in result.sources] == [("z", 1), ("a", 8), ("b", 13), ("a", 18)]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(values, config_like))
def test_any_structure_is_located_alike_read_again(doc: object) -> None:
    text = yaml.safe_dump(doc)
    noted = [str(i) for i in load_text(text, "f.yaml").issues]
    saved = yaml_reader.NOTED_ELEMENTS
    yaml_reader.NOTED_ELEMENTS = 0
    try:
        again = [str(i) for i in load_text(text, "f.yaml").issues]
    finally:
        yaml_reader.NOTED_ELEMENTS = saved
    assert again == noted


def _str_keys(value: object) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _str_keys(v) for k, v in value.items())
    return all(_str_keys(v) for v in value) if isinstance(value, list) else True


@settings(max_examples=300)
@given(st.text(alphabet="aAyYnNoOtTfF~-+.0129:eE_x<=!'\" ", max_size=8))
def test_scalars_resolve_as_pyyaml_resolves_them(scalar: str) -> None:
    """The reader's shortcut past the resolver (a plain scalar no implicit type can start) types every
    scalar as PyYAML does with the same parser (libyaml's reads ``! `` as '', the pure one as None)."""
    text = f"v: {scalar}\nw: [{scalar}]\n"
    try:
        expected = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return
    issues: list[object] = []
    docs = yaml_reader.documents(text, "f.yaml", issues)  # type: ignore[arg-type]
    if not issues and _str_keys(expected):
        assert [doc for doc, _ in docs] == [expected]

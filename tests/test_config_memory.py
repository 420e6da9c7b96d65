"""A large static list is held once and located lazily: the loaded source's raw config and its model share
the list, and a problem deep inside it is located exactly as one near the top."""

from __future__ import annotations

from pullctl.config.loader import load_text
from tests.config_cases import BASE


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

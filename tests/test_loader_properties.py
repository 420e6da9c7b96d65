"""Arbitrary YAML never crashes the loader: it yields sources or located issues, nothing else."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pullctl.config.loader import load_text

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
keys = st.sampled_from(["source_id", "ingestion", "request", "schedule", "iteration", "retry", "x"])
config_like = st.fixed_dictionaries(
    {"source_id": scalars, "ingestion": st.dictionaries(keys, values, max_size=6)}
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_text(text: str) -> None:
    result = load_text(text, "f.yaml")
    assert result.sources or result.issues
    assert all(i.line >= 1 and i.column >= 1 for i in result.issues)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(values, config_like))
def test_any_structure(doc: object) -> None:
    text = yaml.safe_dump(doc)
    result = load_text(text, "f.yaml")
    assert result.sources or result.errors

"""The one canonical-JSON hash: its output is pinned, because stored content hashes must never change."""

from __future__ import annotations

import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from pullctl.canonical import canonical_hash, canonical_json, stdlib_canonical_json
from pullctl.config.models import config_hash
from pullctl.pipeline.documents import content_hash
from pullctl.schedulers.kubernetes.render import rendering_hash

RESPONSE = {
    "latitude": 52.52,
    "hourly": {"time": ["2026-01-01T00:00"], "temperature_2m": [1.5, -0.0, 1e21]},
    "name": "Zürich \u2603",
    "generationtime_ms": 0.12,
    "list": [{"b": 1, "a": None, "c": True}],
}


def test_content_hashes_are_the_ones_stored_by_earlier_versions() -> None:
    # computed by the three hash functions this one replaced (pullctl 0.1, before issue 12)
    assert content_hash(RESPONSE, []) == "56edb6bbd7b3c1b9a09b4c930725c08e321f0795bef00f8ab3cb118424644edb"
    assert (
        content_hash(RESPONSE, ["generationtime_ms", "list.b"])
        == "e0abd0c0fc2f4de56c7b55d5d96b67963ce1736228b7329a8b4b681b0272eb59"
    )


def test_config_and_rendering_hashes_are_unchanged() -> None:
    config = {
        "source_id": "x",
        "ingestion": {
            "schedule": "0 6 * * *",
            "window": {"initial": datetime.date(2024, 1, 1)},
            "request": {"base_url": "https://a.example/ü"},
        },
    }
    assert config_hash(config) == "0adc20cbf984f92f667ef0ae131444a2d2424bf7acee2a4bb7eab5ec3047c1cf"
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "pull-x", "annotations": {"pullctl.dev/config-hash": "old"}},
        "spec": {"schedule": "0 6 * * *", "n": 1.0},
    }
    assert rendering_hash(cronjob) == "8062d7dc18cad74f69fb3f8d902e3cc7e23ae5fd11276521023e7ab9684d30c6"


def test_canonical_json_sorts_keys_and_keeps_unicode() -> None:
    assert (
        canonical_json({"b": [1, {"d": "é", "c": None}], "a": 1.5})
        == '{"a":1.5,"b":[1,{"c":null,"d":"é"}]}'.encode()
    )
    assert canonical_hash({"a": 1}) == canonical_hash({"a": 1})


def test_a_response_with_nan_hashes_instead_of_crashing() -> None:
    # json.loads accepts NaN; the old content hash raised ValueError on it and ended the run with a traceback
    assert len(content_hash({"v": float("nan")}, [])) == 64


def test_ignore_fields_take_json_pointers_for_keys_with_dots() -> None:
    page = {"@odata.context": "changes", "value": [{"id": 1, "etag": "x"}]}
    assert content_hash(page, ["/@odata.context", "value.etag"]) == content_hash({"value": [{"id": 1}]}, [])


# -- the fast encoder (orjson) gives the standard library's bytes ----------------------------------------

# Values where orjson's own output differs from the standard library's: each must still come out as the
# standard library writes it (canonical.py falls back for them).
TRICKY = [
    1e16,
    1e22,
    5e-324,
    -0.0,
    0.1,
    0.0001,
    1e-05,
    1e-07,
    -2.5e-10,
    float("nan"),
    float("inf"),
    float("-inf"),
    2**63 - 1,
    -(2**63),
    2**64,
    -(2**64) - 1,
    10**30,
    "Zürich \u2603 \U0001f600",
    '\x00\x1f\x7f\u2028\u2029"\\/',
    {"": {}, "a": [], "b": [{}], "c": [[]]},
    {"null": "0.0000", "e-": "nullable"},  # the fallback's signs, in strings: written the same either way
    {2: "a", 1: "b"},
    {"when": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)},
    datetime.date(2024, 1, 1),
    {"t": datetime.time(6, 30)},
    True,
    None,
    (1, 2),
]


def test_tricky_values_are_written_as_the_standard_library_writes_them() -> None:
    for value in TRICKY:
        assert canonical_json(value) == stdlib_canonical_json(value), value
    golden = canonical_json(TRICKY)
    assert golden == (
        b"[1e+16,1e+22,5e-324,-0.0,0.1,0.0001,1e-05,1e-07,-2.5e-10,NaN,Infinity,-Infinity,"
        b"9223372036854775807,-9223372036854775808,18446744073709551616,-18446744073709551617,"
        b"1000000000000000000000000000000,"
        + '"Zürich \u2603 \U0001f600",'.encode()
        + b'"\\u0000\\u001f\x7f\xe2\x80\xa8\xe2\x80\xa9\\"\\\\/",'
        b'{"":{},"a":[],"b":[{}],"c":[[]]},{"e-":"nullable","null":"0.0000"},{"1":"b","2":"a"},'
        b'{"when":"2026-01-02 03:04:05+00:00"},"2024-01-01",{"t":"06:30:00"},true,null,[1,2]]'
    )


class _Sub(str):
    pass


def test_subclasses_of_json_types_are_written_as_the_standard_library_writes_them() -> None:
    value = {_Sub("k"): _Sub("v"), "n": True}
    assert canonical_json(value) == stdlib_canonical_json(value) == b'{"k":"v","n":true}'


_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN, infinities, subnormals, -0.0 included
    | st.floats(min_value=-1e-3, max_value=1e-3)
    | st.floats(min_value=1e14, max_value=1e24)
    | st.text()
    | st.sampled_from(["null", "0.0000", "e-", "e-05"])
    | st.datetimes()
    | st.dates()
)
_json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=1000, deadline=None)
@given(_json_values)
def test_both_encoders_give_the_same_bytes(value: object) -> None:
    assert canonical_json(value) == stdlib_canonical_json(value)


@settings(max_examples=300, deadline=None)
@given(st.floats())
def test_every_float_is_written_as_the_standard_library_writes_it(value: float) -> None:
    assert canonical_json([value, {"x": value}]) == stdlib_canonical_json([value, {"x": value}])

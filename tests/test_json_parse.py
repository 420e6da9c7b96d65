"""A response body parses to the value ``json.loads`` gives (its content hash depends on it), faster."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pullctl.run.reader import parse_json

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()  # NaN and the infinities: written as NaN / Infinity, which json.loads reads
    | st.text()
    | st.text(
        alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=2
    )  # lone surrogates
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=1000, deadline=None)
@given(_values, st.booleans(), st.sampled_from([None, 2]))
def test_a_body_parses_to_the_standard_librarys_value(
    value: object, ascii_only: bool, indent: int | None
) -> None:
    body = json.dumps(value, ensure_ascii=ascii_only, indent=indent).encode("utf-8", "surrogatepass")
    try:
        expected = repr(json.loads(body))
    except ValueError:
        with pytest.raises(ValueError):
            parse_json(body)
        return
    assert repr(parse_json(body)) == expected  # repr: 1 and 1.0, 0.0 and -0.0, NaN all told apart


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": 1, "a": 2}',
        b"18446744073709551615",
        b"18446744073709551616",
        b"-9223372036854775809",
        b"123456789012345678901234567890",
        b"1.00000000000000000000001",
        b"1e400",
        b"[NaN, Infinity, -Infinity]",
        b"-0",
        b"-0.0",
        b"5e-324",
        b'"\\ud800"',
        b"\xef\xbb\xbf{}",
        '{"a": "ü"}'.encode("utf-16"),
        b" \t\r\n[1 , 2]\n",
    ],
)
def test_tricky_bodies_parse_as_the_standard_library_parses_them(body: bytes) -> None:
    assert repr(parse_json(body)) == repr(json.loads(body))


@pytest.mark.parametrize("body", [b"", b"{", b"[1,]", b"{'a': 1}", b'"\x01"', b"\xff", b"1 2", b"nan"])
def test_what_the_standard_library_refuses_is_refused_with_its_message(body: bytes) -> None:
    with pytest.raises(ValueError) as expected:
        json.loads(body)
    with pytest.raises(ValueError) as got:
        parse_json(body)
    assert str(got.value) == str(expected.value)

"""Our portable CBOR encoder must produce exactly cbor2's bytes for what the pole emits."""

import cbor2
from hypothesis import given
from hypothesis import strategies as st

from edge import cbor

scalars = (
    st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=40)
    | st.booleans()
    | st.none()
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(st.integers(-30, 30) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=30,
)


@given(values)
def test_matches_cbor2_byte_for_byte(v):
    assert cbor.dumps(v) == cbor2.dumps(v)


@given(values)
def test_round_trips_through_cbor2(v):
    assert cbor2.loads(cbor.dumps(v)) == v


def test_special_floats_match_cbor2():
    for f in (float("nan"), float("inf"), float("-inf")):
        assert cbor.dumps(f) == cbor2.dumps(f)


def test_tag_and_ordered_map():
    data = cbor.dumps(cbor.Tag(18, [cbor.Map([(2, "b"), (1, "a")])]))
    assert data == cbor2.dumps(cbor2.CBORTag(18, [{2: "b", 1: "a"}]))
    assert list(cbor2.loads(data).value[0]) == [2, 1]


def test_heads_are_shortest_form():
    assert cbor.encode_int(23) == b"\x17"
    assert cbor.encode_int(24) == b"\x18\x18"
    assert cbor.encode_int(256) == b"\x19\x01\x00"
    assert cbor.encode_int(-1) == b"\x20"
    assert cbor.encode_int(2**32) == b"\x1b\x00\x00\x00\x01\x00\x00\x00\x00"


def test_rejects_unknown_types():
    import pytest

    with pytest.raises(TypeError):
        cbor.dumps({1, 2})

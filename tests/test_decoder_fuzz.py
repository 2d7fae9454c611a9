"""Fuzz targets (hypothesis) for the city-side decoder: structured CBOR, not just random
bytes, so the fuzzer reaches past the CBOR parser into COSE and SenML handling."""

from __future__ import annotations

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.cose import cti_bytes
from provisioning.senml_decode import SenMLError, resolve
from provisioning.verifier import Verifier
from tests.helpers import NOW, keys_for, signer

S = signer("nl-fz-0001")
scalar = (
    st.integers(-(2**64), 2**64 - 1)
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=12)
    | st.booleans()
    | st.none()
)
label = st.sampled_from([-6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, "x", "y_"])
record = st.dictionaries(label, scalar, max_size=6)
packs = st.lists(record, max_size=6) | scalar | st.dictionaries(label, scalar, max_size=3)


@settings(max_examples=500)
@given(packs)
def test_resolve_either_resolves_or_says_why(pack):
    try:
        recs = resolve(pack)
    except SenMLError:
        return
    for r in recs:
        assert isinstance(r.name, str) and r.name


@settings(max_examples=300)
@given(packs)
def test_signed_garbage_senml_never_crashes_the_verifier(pack):
    ver = Verifier(keys_for(S))
    v = ver.check(
        f"poles/{S.pole_id}/data", S.sign("data", cbor2.dumps(pack), NOW, cti_bytes(1, 1))
    )
    assert v.status in ("accepted", "rejected")
    if v.status == "rejected":
        assert v.reason.startswith("senml"), v.reason


cose_like = st.tuples(
    st.binary(max_size=40) | st.builds(cbor2.dumps, st.dictionaries(label, scalar, max_size=4)),
    st.dictionaries(label, scalar, max_size=3),
    st.binary(max_size=60),
    st.binary(min_size=0, max_size=70),
)


@settings(max_examples=500)
@given(cose_like, st.sampled_from([18, 17, 98, 16]))
def test_structured_cose_lookalikes_are_rejected(parts, tag):
    data = cbor2.dumps(cbor2.CBORTag(tag, list(parts)))
    v = Verifier(keys_for(S)).check(f"poles/{S.pole_id}/data", data)
    assert v.status == "rejected"

"""COSE_Sign1 as produced by the pole: structure, headers, and an independent check."""

import cbor2
from nacl.signing import VerifyKey

from edge.cose import ALG_EDDSA, cti_bytes, fingerprint, kid_for
from tests.helpers import NOW, data_payload, signer


def test_structure_and_protected_header():
    s = signer("nl-ex-0007")
    msg = s.sign("data", data_payload("nl-ex-0007"), NOW, cti_bytes(3, 9))
    tag = cbor2.loads(msg)
    assert tag.tag == 18
    prot_raw, unprot, payload, sig = tag.value
    assert unprot == {} and len(sig) == 64
    prot = cbor2.loads(prot_raw)
    assert prot[1] == ALG_EDDSA and prot[3] == 112 and prot[4] == kid_for(s.public_key)
    assert prot[15] == {1: "nl-ex-0007", 6: NOW, 7: bytes.fromhex("0000000300000009")}
    # Re-encoding the header with cbor2 gives the same bytes: canonical enough to rebuild.
    assert cbor2.dumps(prot) == prot_raw
    tbs = cbor2.dumps(["Signature1", prot_raw, b"", payload])
    VerifyKey(s.public_key).verify(tbs, sig)  # raises if wrong


def test_sig_structure_matches_cbor2():
    s = signer()
    prot = s.protected("data", NOW, cti_bytes(1, 1))
    payload = b"x" * 300
    assert s.sig_structure(prot, payload) == cbor2.dumps(["Signature1", prot, b"", payload])


def test_kid_and_fingerprint_are_stable():
    pk = bytes(range(32))
    assert kid_for(pk) == kid_for(pk) and len(kid_for(pk)) == 8
    assert fingerprint(pk).count(":") == 3

"""Key rotation: the new key is announced under the old one with proof of possession,
and the verifier (and its trust list) accept it; forged announcements are rejected."""

from __future__ import annotations

import cbor2

from edge import senml
from edge.cose import Signer, cti_bytes
from edge.rotation import ANNOUNCEMENT, rotate
from edge.state import create_identity, load_identity
from provisioning.trustlist import TrustList, load_keys
from provisioning.verifier import Verifier
from tests.helpers import NOW, data_payload


def test_rotation_announced_and_accepted(tmp_path):
    old = create_identity(tmp_path / "pole", "nl-ex-0001")
    trust = TrustList(tmp_path / "trust.sqlite")
    trust.add("nl-ex-0001", old.public_key)
    ver = Verifier(load_keys(tmp_path / "trust.sqlite"), trust=trust)
    new = rotate(tmp_path / "pole")
    assert new.public_key != old.public_key
    assert load_identity(tmp_path / "pole").kid == new.kid
    announcement = (tmp_path / "pole" / ANNOUNCEMENT).read_bytes()
    msg_new = Signer(new.seed, "nl-ex-0001").sign("data", data_payload(), NOW, cti_bytes(9, 1))
    assert ver.check("poles/nl-ex-0001/data", msg_new).reason.startswith("kid")
    v = ver.check("poles/nl-ex-0001/rotate", announcement)
    assert v.accepted, v
    assert ver.check("poles/nl-ex-0001/data", msg_new).accepted
    assert {r.kid for r in trust.records()} == {old.kid, new.kid}
    trust.close()


def test_announcement_without_proof_of_possession_is_rejected(tmp_path):
    old = create_identity(tmp_path, "nl-ex-0001")
    ver = Verifier(load_keys_for(old))
    stranger = Signer(bytes(range(32)), "someone")
    payload = senml.encode_pack(
        [
            [(senml.BN, "nl-ex-0001/"), (0, "rotate/new_key"), (8, stranger.public_key)],
            [(0, "rotate/proof"), (8, b"\x00" * 64)],
        ]
    )
    forged = Signer(old.seed, "nl-ex-0001").sign("rotate", payload, NOW, cti_bytes(1, 1))
    v = ver.check("poles/nl-ex-0001/rotate", forged)
    assert v.status == "rejected" and v.reason.startswith("rotate"), v
    assert stranger.kid not in ver.keys
    # Signed by an unknown key, a rotation is rejected before anything else.
    assert cbor2.loads(forged).tag == 18


def load_keys_for(ident):
    from provisioning.trustlist import KeyRecord

    return {ident.kid: KeyRecord(ident.pole_id, ident.public_key)}

"""The verifier accepts authentic fresh messages once, rejects the rest, never crashes."""

import cbor2
from hypothesis import given
from hypothesis import strategies as st

from edge import senml
from edge.cose import cti_bytes
from provisioning.verifier import Verifier
from tests.helpers import NOW, data_payload, keys_for, message, signer, topic

S = signer("nl-ex-0001")
OTHER = signer("nl-ex-0002")


def fresh(**kw) -> Verifier:
    return Verifier(keys_for(S, OTHER), **kw)


def test_accepts_and_decodes():
    v = fresh().check(topic(S), message(S, 1))
    assert v.accepted, v
    assert v.pole_id == "nl-ex-0001" and v.kind == "data" and v.cti == (1 << 32) | 1
    assert v.records[0].name == "nl-ex-0001/bme280/temperature/mean" and v.records[0].value == 21.5


def test_duplicate_is_recognised_and_replay_below_floor_rejected():
    ver = fresh(window=4)
    m1 = message(S, 1)
    assert ver.check(topic(S), m1).accepted
    assert ver.check(topic(S), m1).status == "duplicate"
    for i in range(2, 10):
        assert ver.check(topic(S), message(S, i)).accepted
    v = ver.check(topic(S), m1)
    assert v.status == "rejected" and v.reason.startswith("replay")


def test_backlog_after_newer_birth_is_accepted_once():
    ver = fresh()
    assert ver.check(topic(S, "birth"), message(S, 1, boot=2, kind="birth")).accepted
    for i in range(1, 5):  # spooled during an outage in the previous boot
        assert ver.check(topic(S), message(S, i, boot=1)).accepted
        assert ver.check(topic(S), message(S, i, boot=1)).status == "duplicate"


def test_rejections_have_reasons():
    other = signer("nl-ex-0002")
    ver = Verifier(keys_for(S, other))
    good = message(S, 1)
    tampered = bytearray(good)
    tampered[-70] ^= 1
    stranger = signer(S.pole_id)  # a key nobody registered, on a known pole's topic
    cases = {
        "signature": (topic(S), bytes(tampered)),
        "pole": (topic(signer("nl-ex-0009")), message(signer("nl-ex-0009"), 1)),
        "kid": (topic(S), message(stranger, 1)),
        "iss": ("poles/nl-ex-0002/data", good),
        "typ": (topic(S, "health"), good),
        "cbor": (topic(S), b"\xff\x00"),
        "cose": (topic(S), cbor2.dumps([1, 2, 3])),
        "size": (topic(S), b"\x00" * 20000),
        "topic": ("other/x", good),
    }
    for reason, (t, payload) in cases.items():
        v = ver.check(t, payload)
        assert v.status == "rejected" and v.reason.startswith(reason), (reason, v)


def test_revoked_key_and_wrong_alg_rejected():
    ver = Verifier(keys_for(S, status="revoked"))
    assert ver.check(topic(S), message(S, 1)).reason.startswith("kid")
    tag = cbor2.loads(message(S, 2))
    prot = cbor2.loads(tag.value[0])
    prot[1] = -7  # ES256
    forged = cbor2.CBORTag(18, [cbor2.dumps(prot), *tag.value[1:]])
    assert fresh().check(topic(S), cbor2.dumps(forged)).reason.startswith("alg")


def test_iat_skew():
    ver = fresh(max_skew_s=300, clock=lambda: NOW + 1000)
    assert ver.check(topic(S), message(S, 1)).reason.startswith("iat")
    assert fresh(max_skew_s=300, clock=lambda: NOW + 10).check(topic(S), message(S, 1)).accepted


def test_stale_death_with_current_bdseq_accepted():
    ver = fresh(window=2)
    death = S.sign(
        "death",
        senml.encode_pack([[(senml.BN, S.pole_id + "/"), (0, "bdSeq"), (2, 7)]]),
        NOW,
        cti_bytes(1, 1),
    )
    birth = S.sign(
        "birth",
        senml.encode_pack([[(senml.BN, S.pole_id + "/"), (0, "bdSeq"), (2, 7)]]),
        NOW,
        cti_bytes(1, 2),
    )
    assert ver.check(topic(S, "birth"), birth).accepted
    for i in range(3, 8):
        assert ver.check(topic(S), message(S, i)).accepted
    assert ver.check(topic(S, "death"), death).accepted


@given(st.binary(max_size=600))
def test_random_bytes_never_crash(data):
    v = fresh().check(topic(S), data)
    assert v.status == "rejected"


@given(st.integers(0, 700), st.integers(0, 7))
def test_any_bit_flip_is_rejected(pos, bit):
    good = message(S, 1, payload=data_payload(value=3.25))
    bad = bytearray(good)
    bad[pos % len(bad)] ^= 1 << bit
    v = fresh().check(topic(S), bytes(bad))
    assert v.status == "rejected", v


def test_message_without_iat_is_accepted_with_relative_time():
    """A pole without a valid clock leaves iat out and uses SenML relative time."""
    payload = senml.encode_pack(
        [[(senml.BN, S.pole_id + "/"), (senml.BT, 0), (0, "window"), (1, "s"), (2, 1)]]
    )
    v = fresh(max_skew_s=300).check(topic(S), S.sign("data", payload, None, cti_bytes(1, 1)))
    assert v.accepted and v.iat is None and v.records[0].time == 0

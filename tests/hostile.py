"""A corpus of hostile messages for the city's verifier, one or more per class of attack
(issue 13). Used by the end-to-end test through a real broker and by the cost benchmark
(bench/bench_hostile.py). Messages come from a pole account the attacker controls: its
key is on the trust list (a stolen or compromised controller), so it can sign anything,
and it may publish only on its own topics (the broker's ACL).

Each item: (class, kind of the topic it is published on, bytes, acceptable reason
prefixes). Nothing here is accepted by a correct verifier.
"""

from __future__ import annotations

import cbor2
from nacl.bindings import crypto_sign

from edge import messages
from edge.cose import Signer, cti_bytes

NOW = 1_800_000_000


def _sig1(signer: Signer, protected: bytes, payload: bytes, unprotected: dict | None = None):
    tbs = cbor2.dumps(["Signature1", protected, b"", payload])
    sig = crypto_sign(tbs, signer._secret)[:64]
    return cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected or {}, payload, sig]))


def _protected(
    signer: Signer,
    kind: str = "data",
    iat: int | None = NOW,
    seq: int = 1,
    iss: str | None = None,
    extra: dict | None = None,
) -> bytes:
    claims = {1: iss or signer.pole_id, 7: cti_bytes(7, seq)}
    if iat is not None:
        claims[6] = iat
    hdr = {1: -8, 3: 112, 4: signer.kid, 15: claims, 16: messages.kind(kind).typ}
    hdr.update(extra or {})
    return cbor2.dumps(hdr)


def _pack(pole: str, *records: dict) -> list:
    first = {-2: pole + "/", -3: NOW, **records[0]}
    return [first, *records[1:]]


def good_data(signer: Signer, seq: int, iat: int = NOW) -> bytes:
    payload = cbor2.dumps(
        _pack(signer.pole_id, {0: "window", 1: "s", 2: 60}, {0: "x/t/count", 1: "count", 2: 1})
    )
    return _sig1(signer, _protected(signer, "data", iat, seq), payload)


def deep(n: int) -> bytes:
    return b"\x81" * n + b"\x00"


def billion_laughs(levels: int = 24) -> bytes:
    """Value sharing (tags 28/29): each level references the previous twice."""
    out = cbor2.dumps(cbor2.CBORTag(28, [0, 0]))
    for _ in range(levels):
        out = b"\xd8\x1c\x82" + out + b"\xd8\x1d\x00"  # shareable [prev, sharedref(0)]
    return out


def corpus(
    h: Signer,
    victim: str,
    max_size: int = 16 * 1024,
    now: int = NOW,
    victim_kid: bytes | None = None,
) -> list[tuple[str, str, bytes, tuple]]:
    """Hostile messages signed (where signing helps the attack) by ``h``'s key; ``victim``
    is an honest pole's id (``victim_kid`` its key id). ``max_size``: the verifier's
    message limit; ``now``: the verifier's clock (messages are stamped with it, the stale
    and future ones a day off)."""
    out: list[tuple[str, str, bytes, tuple]] = []
    seq = iter(range(100, 100_000))

    def signed(payload: bytes, kind: str = "data", iat: int | None = now, **hdr) -> bytes:
        return _sig1(h, _protected(h, kind, iat=iat, seq=next(seq), **hdr), payload)

    # Structure attacks on the envelope (nothing signed needed).
    out.append(("value sharing (envelope)", "data", billion_laughs(), ("cbor",)))
    out.append(
        ("deep nesting (envelope)", "data", b"\xd2" + deep(20000)[: max_size - 1], ("cbor",))
    )
    out.append(
        ("huge length (envelope)", "data", b"\xd2\x84\x5b" + (2**63).to_bytes(8, "big"), ("cbor",))
    )
    out.append(
        ("huge array (envelope)", "data", b"\xd2\x9b" + (2**62).to_bytes(8, "big"), ("cbor",))
    )
    out.append(("indefinite (envelope)", "data", b"\xd2\x9f\x40\xa0\x40\x40\xff", ("cbor",)))
    out.append(("non-minimal head", "data", b"\xd2\x98\x04\x40\xa0\x40\x40", ("cbor",)))
    good = good_data(h, next(seq), now)
    out.append(("trailing bytes", "data", good + b"\x00", ("cbor",)))
    out.append(("oversized", "data", good + b"\x00" * (max_size + 1 - len(good)), ("size",)))
    # Signed by the attacker's (registered) key: the payload is decoded.
    out.append(("value sharing (payload)", "data", signed(billion_laughs()), ("senml", "cbor")))
    out.append(("regex tag (payload)", "data", signed(b"\x81\xd8\x23\x63a*b"), ("senml", "cbor")))
    out.append(("bignum tag (payload)", "data", signed(b"\x81\xc2\x49" + b"\x01" * 9), ("senml",)))
    out.append(("deep nesting (payload)", "data", signed(deep(8000)), ("senml",)))
    out.append(
        (
            "huge length (payload)",
            "data",
            signed(b"\x81\x7b" + (2**63).to_bytes(8, "big")),
            ("senml",),
        )
    )
    out.append(
        ("duplicate keys (payload)", "data", signed(b"\x81\xa2\x00\x61a\x00\x61b"), ("senml",))
    )
    out.append(("indefinite (payload)", "data", signed(b"\x9f\xa1\x00\x61a\xff"), ("senml",)))
    dup_hdr = _protected(h, "data", iat=now, seq=next(seq))  # a map of 5, made a map of 6 ...
    out.append(
        (
            "duplicate keys (header)",
            "data",
            _sig1(h, b"\xa6" + dup_hdr[1:] + b"\x04\x48" + h.kid, b"\x80"),  # ... with kid twice
            ("cose",),
        )
    )
    out.append(
        (
            "unprotected header",
            "data",
            _sig1(h, _protected(h, iat=now, seq=next(seq)), b"\x80", {4: h.kid}),
            ("cose",),
        )
    )
    # Meaning: kinds, poles, time.
    health = cbor2.dumps(_pack(h.pole_id, {0: "time/valid", 4: True}))
    out.append(("kind swap", "data", signed(health, "health"), ("typ",)))
    out.append(
        (
            "no kind",
            "data",
            _sig1(h, _protected(h, iat=now, seq=next(seq), extra={16: "x"}), health),
            ("typ",),
        )
    )
    out.append(
        (
            "another pole's iss",
            "data",
            signed(cbor2.dumps(_pack(victim, {0: "window", 1: "s", 2: 60})), iss=victim),
            ("iss",),
        )
    )
    if victim_kid is not None:  # the honest pole's kid on the attacker's topic
        kid_swap = _protected(h, "data", iat=now, seq=next(seq), extra={4: victim_kid})
        out.append(("cross-pole kid", "data", _sig1(h, kid_swap, b"\x80"), ("iss",)))
    out.append(
        (
            "another pole's records",
            "data",
            signed(cbor2.dumps(_pack(victim, {0: "window", 1: "s", 2: 60}))),
            ("senml",),
        )
    )
    out.append(
        (
            "undeclared record",
            "data",
            signed(cbor2.dumps(_pack(h.pole_id, {0: "mac", 3: "aa:bb"}))),
            ("kind",),
        )
    )
    out.append(
        (
            "wrong value kind",
            "health",
            signed(cbor2.dumps(_pack(h.pole_id, {0: "time/valid", 2: 1})), "health"),
            ("kind",),
        )
    )
    out.append(
        (
            "stale iat",
            "data",
            signed(cbor2.dumps(_pack(h.pole_id, {0: "window", 1: "s", 2: 60})), iat=now - 86400),
            ("iat",),
        )
    )
    out.append(
        (
            "future iat",
            "data",
            signed(cbor2.dumps(_pack(h.pole_id, {0: "window", 1: "s", 2: 60})), iat=now + 86400),
            ("iat",),
        )
    )
    out.append(("wrong algorithm", "data", signed(b"\x80", extra={1: -7}), ("alg",)))
    out.append(("critical header", "data", signed(b"\x80", extra={2: [99]}), ("cose",)))
    # The largest signed payload that is still a valid SenML pack: a flood of records.
    n = (max_size - 300) // 14
    flood = cbor2.dumps(_pack(h.pole_id, *({0: "counter/a", 2: 1} for _ in range(n))))
    out.append(("record flood", "data", signed(flood), ("senml",)))
    pairs = (max_size - 400) // 6  # one record with thousands of (unknown) labels
    wide = {0: "window", 1: "s", 2: 60, **{-1000 - i: 0 for i in range(pairs)}}
    out.append(("huge record map", "data", signed(cbor2.dumps(_pack(h.pole_id, wide))), ("senml",)))
    dense = b"\x99" + (max_size // 2).to_bytes(2, "big") + b"\x80" * (max_size // 2)
    out.append(
        ("dense items (payload)", "data", signed(dense[: max_size - 200]), ("senml", "cbor"))
    )
    return out

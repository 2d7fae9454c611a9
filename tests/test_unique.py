"""Unique-device counting: a fresh key per window, nothing but the count comes out."""

from edge.unique import UniqueCounter


def test_counts_distinct_and_forgets():
    u = UniqueCounter()
    macs = [bytes([2, 0, 0, 0, 0, i]) for i in range(30)]
    for m in macs + macs[:10]:
        u.add(m)
    key_before = bytes(u._key)
    assert u.close() == 30
    assert bytes(u._key) != key_before and len(u._seen) == 0
    assert u.close() == 0
    assert "02" not in repr(u) and key_before.hex() not in repr(u)

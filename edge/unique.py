"""Unique-device counting, off by default; only where the city explicitly enables it.

Within one window, each device address is reduced to HMAC-SHA256(key, address) with a
fresh random 256-bit key per window and per pole, held only in RAM; only the size of
the set leaves (as a count, through the gate's small-count protection). At the end of
the window the key is overwritten and the set cleared: a digest from one window can
never be linked to one from another, and none is ever stored, logged or published.
HMAC is written out from hashlib.sha256 so this also runs on MicroPython.
"""

import hashlib
import os

_BLOCK = 64


def hmac_sha256(key, msg):
    k = bytearray(key + bytes(_BLOCK - len(key)))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in k) + msg).digest()
    return hashlib.sha256(bytes(b ^ 0x5C for b in k) + inner).digest()


class UniqueCounter:
    def __init__(self):
        self._key = bytearray(os.urandom(32))
        self._seen = set()

    def __repr__(self):  # never show key or digests
        return "UniqueCounter(%d in this window)" % len(self._seen)

    def add(self, address):
        self._seen.add(hmac_sha256(bytes(self._key), bytes(address)))

    def close(self):
        """The number of distinct devices this window; then forget everything."""
        n = len(self._seen)
        for i in range(len(self._key)):
            self._key[i] = 0
        self._seen.clear()
        self._key = bytearray(os.urandom(32))
        return n

"""The WebAssembly port has no os.urandom (boards do): give it one for the tests only."""

import os

if not hasattr(os, "urandom"):
    import random

    def _urandom(n):
        return bytes(random.getrandbits(8) for _ in range(n))

    os.urandom = _urandom

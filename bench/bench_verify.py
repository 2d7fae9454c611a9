"""Benchmark: verified messages per second through the city's verifier against bare
Ed25519 verifications of the same Sig_structure bytes, on one core, in one run.

The verifier does everything it does in production: strict CBOR decoding, COSE
checks, trust-list lookup among 1,000 poles, signature, claims, replay window,
SenML resolution. Run: .venv/bin/python -m bench.bench_verify
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from nacl.bindings import crypto_sign_open

from bench.bench_sign import demo_pole_window
from edge.cose import Signer, cti_bytes
from provisioning.trustlist import KeyRecord
from provisioning.verifier import Verifier


def main() -> int:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    signers = [Signer(i.to_bytes(2, "big") * 16, f"nl-bench-{i:04d}") for i in range(1000)]
    keys = {s.kid: KeyRecord(s.pole_id, s.public_key) for s in signers}
    enc, window = demo_pole_window()
    payload = enc.encode(window, window.end)
    n = 6000
    msgs = []
    for i in range(n):
        s = signers[i % len(signers)]
        msgs.append(
            (
                f"poles/{s.pole_id}/data",
                s.sign(payload, window.end, cti_bytes(1, i // len(signers) + 1)),
            )
        )
    s0 = signers[0]
    tbs = s0.sig_structure(s0.protected(window.end, cti_bytes(1, 1)), payload)
    signed = s0.sign(payload, window.end, cti_bytes(1, 1))
    sm = signed[-64:] + tbs
    pk = s0.public_key

    rounds = []
    for _ in range(3):
        ver = Verifier(keys, window=64)
        t0 = time.perf_counter()
        for topic, m in msgs:
            v = ver.check(topic, m)
        full = n / (time.perf_counter() - t0)
        assert v.accepted and ver.counts["accepted"] == n, ver.counts
        t0 = time.perf_counter()
        for _ in range(n):
            crypto_sign_open(sm, pk)
        bare = n / (time.perf_counter() - t0)
        rounds.append((full, bare, full / bare))
    best = max(rounds, key=lambda r: r[2])
    med = statistics.median(r[2] for r in rounds)
    print("verifier benchmark (one core; demo-pole messages, 1,000 poles in the trust list)")
    print(f"  Verifier.check (decode, checks, signature, replay, SenML): {best[0]:8.0f} msg/s")
    print(f"  bare Ed25519 verification of the same Sig_structure:      {best[1]:8.0f} op/s")
    print(f"  ratio: best {best[2]:.2f}x, median of 3 {med:.2f}x (target >= 0.8x)")
    ok = med >= 0.8
    print("  target met" if ok else "  TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

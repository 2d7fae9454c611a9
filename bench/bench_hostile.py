"""Benchmark: what a hostile message costs the city's verifier, against an honest one.

Every message of the hostile corpus (tests/hostile.py: structure bombs, tags, nesting,
huge declared lengths, duplicate keys, kind swaps, floods up to the size limit), signed
where that gets it further (by a registered but compromised pole's key), is verified
on one core; the worst CPU time and the peak memory (tracemalloc) per message are
printed against the cost of verifying one honest full-sensor-set message of the same
run, on the full path (its first message) and on the template path (every later one).
Also the costliest message a compromised pole can get accepted (a health pack with as
many distinct records as a pack may hold): not one the verifier can refuse, but a bound
on what a signed message can cost.

Target (issue 13): no hostile message costs more than 20x an honest one, nor more than
16 MiB. Run: .venv/bin/python -m bench.bench_hostile
"""

from __future__ import annotations

import os
import statistics
import time
import tracemalloc

import cbor2

from bench.full_set import full_set_encoder, full_set_window
from edge.cose import Signer, cti_bytes
from provisioning.trustlist import KeyRecord
from provisioning.verifier import MAX_RECORDS, Verifier
from tests.hostile import NOW, _protected, _sig1, corpus

ROUNDS = 7


def timed(fn, rounds: int = ROUNDS) -> tuple[float, float, float]:
    """(min, median, max) seconds of ``fn()`` over rounds."""
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out), statistics.median(out), max(out)


def peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> int:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    evil = Signer(b"\x09" * 32, "nl-evil-0001")
    honest = Signer(b"\x0a" * 32, "nl-good-0001")
    keys = {s.kid: KeyRecord(s.pole_id, s.public_key) for s in (evil, honest)}

    def verifier() -> Verifier:
        return Verifier(dict(keys), max_skew_s=300, clock=lambda: NOW)

    enc, window = full_set_encoder(honest.pole_id), full_set_window()
    payload = enc.encode(window, NOW)
    first = honest.sign("data", payload, NOW, cti_bytes(1, 1))
    later = [honest.sign("data", payload, NOW, cti_bytes(1, i)) for i in range(2, 200)]
    topic = f"poles/{honest.pole_id}/data"

    def honest_full() -> None:
        verifier().check(topic, first)

    warm = verifier()
    warm.check(topic, first)
    it = iter(later)

    def honest_warm() -> None:
        warm.check(topic, next(it))

    full = timed(honest_full)
    fast = timed(honest_warm, 50)
    print(f"honest full-set data message: {len(first)} bytes, {len(payload)} payload bytes")
    print(
        f"  full path (a pole's first message): {full[0] * 1e6:8.1f} us min, "
        f"{full[1] * 1e6:.1f} median"
    )
    print(
        f"  template path (every later one):    {fast[0] * 1e6:8.1f} us min, "
        f"{fast[1] * 1e6:.1f} median"
    )
    print()
    print(
        f"{'hostile class':44} {'bytes':>6} {'us min':>9} {'x full':>7} {'x warm':>7} "
        f"{'peak KiB':>9}  verdict"
    )
    worst_cpu, worst_mem = ("", 0.0), ("", 0)
    rows = corpus(evil, honest.pole_id, victim_kid=honest.kid)
    # The costliest pack a compromised pole can get ACCEPTED: as many records as a pack
    # may hold (MAX_RECORDS), each a distinct, declared health counter with a long name
    # (no cache helps), filling the size limit.
    recs = [{0: f"counter/{i:04d}" + "x" * 36, 1: "count", 2: i} for i in range(MAX_RECORDS)]
    recs[0] = {-2: evil.pole_id + "/", -3: NOW, **recs[0]}
    biggest = _sig1(evil, _protected(evil, "health", seq=99_999), cbor2.dumps(recs))
    rows.append(("(accepted) largest valid health pack", "health", biggest, ("",)))
    for cls, kind, msg, _ok in rows:
        t = f"poles/{evil.pole_id}/{kind}"
        # A fresh verifier each time: an accepted message would otherwise be timed on the
        # template path it taught, or be a duplicate.
        cost = timed(lambda t=t, msg=msg: verifier().check(t, msg))[0]
        mem = peak(lambda t=t, msg=msg: verifier().check(t, msg))
        verdict = verifier().check(t, msg)
        label = verdict.status if verdict.status != "rejected" else verdict.reason.split(":")[0]
        print(
            f"{cls[:44]:44} {len(msg):6} {cost * 1e6:9.1f} {cost / full[0]:7.2f} "
            f"{cost / fast[0]:7.1f} {mem / 1024:9.1f}  {label}"
        )
        if cost > worst_cpu[1]:
            worst_cpu = (cls, cost)
        if mem > worst_mem[1]:
            worst_mem = (cls, mem)
    print()
    print(
        f"worst CPU:    {worst_cpu[0]}: {worst_cpu[1] * 1e6:.0f} us = "
        f"{worst_cpu[1] / full[0]:.2f}x an honest message's full path, "
        f"{worst_cpu[1] / fast[0]:.1f}x its template path (target <= 20x)"
    )
    print(f"worst memory: {worst_mem[0]}: {worst_mem[1] / 1024:.0f} KiB (target <= 16 MiB)")
    ok = worst_cpu[1] <= 20 * full[0] and worst_mem[1] <= 16 * 1024 * 1024
    print("target met" if ok else "TARGET MISSED")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: the strict decoder (edge.cbordecode) against cbor2's C decoder, in one run.

Prints µs per decode (min / median / max over rounds) for our decoder and for cbor2, and
the ratio ours/cbor2 on the mins and on the medians, for:
  (i)   a realistic full SenML window pack: 101 records, the first with bn and bt, then
        per series mean/min/max as float64 and a count as a small integer;
  (ii)  a small COSE_Sign1 envelope: tag 18, [bstr, {}, bstr of 3 kB, bstr of 64];
  (iii) hostile inputs under 16 KiB, each built to cost the most per byte in one way
        (the worst per byte is the figure to watch), with our peak allocation
        (tracemalloc) against the input's size. Decoded as the verifier decodes an
        envelope (tags=(18,)) but with the default max_depth of 16; the verifier's own
        max_depth=3 rules out the nesting shapes.

Pinned to one core, short rounds (the machine is shared): the min is the figure least
disturbed by other load. Run: .venv/bin/python -m bench.bench_cbordecode [--rounds N]
"""

from __future__ import annotations

import os
import random
import statistics
import struct
import sys
import time
import tracemalloc

import cbor2

from edge import cbor
from edge.cbordecode import loads

HOSTILE_LIMIT = 16 * 1024


def senml_pack() -> bytes:
    """What a pole sends every minute: 25 series x (mean, min, max, count) + the window."""
    rng = random.Random(7)
    sensors = {
        "sds011": [("pm2_5", "ug/m3"), ("pm10", "ug/m3")],
        "bme280": [("temperature", "Cel"), ("pressure", "Pa"), ("humidity", "%RH")],
        "ina219": [("current", "A"), ("voltage", "V"), ("power", "W")],
        "sht31": [("temperature", "Cel"), ("humidity", "%RH")],
        "lis3dh": [("tilt", "deg"), ("vibration", "m/s2")],
        "ld2450": [("people", "count"), ("bicycles", "count"), ("vehicles", "count")],
        "pms5003": [("pm1_0", "ug/m3"), ("pm2_5", "ug/m3"), ("pm10", "ug/m3")],
        "lamp": [("power", "W"), ("energy", "J"), ("dim", "%")],
        "veml7700": [("illuminance", "lx"), ("white", "lx"), ("als", "lx"), ("lux", "lx")],
    }
    recs = [cbor.Map([(-2, "nl-ex-0001/"), (-3, 1_800_000_000), (0, "window"), (1, "s"), (2, 60)])]
    for sensor, fields in sensors.items():
        for field, unit in fields:
            base = f"{sensor}/{field}/"
            for stat in ("mean", "min", "max"):
                recs.append(
                    cbor.Map([(0, base + stat), (1, unit), (2, round(rng.uniform(-40, 900), 2))])
                )
            recs.append(cbor.Map([(0, base + "count"), (1, "count"), (2, rng.randrange(1, 61))]))
    assert len(recs) == 101, len(recs)
    return cbor.dumps(recs)


def cose_sign1() -> bytes:
    rng = random.Random(18)
    protected = cbor.dumps(cbor.Map([(1, -8), (4, b"kid-0001")]))
    payload = bytes(rng.getrandbits(8) for _ in range(3000))
    sig = bytes(rng.getrandbits(8) for _ in range(64))
    return cbor.dumps(cbor.Tag(18, [protected, cbor.Map([]), payload, sig]))


def _fill(item: bytes, limit: int = HOSTILE_LIMIT) -> bytes:
    """An array of as many copies of ``item`` as fit in ``limit`` bytes."""
    n = (limit - 5) // len(item)
    return cbor.head(4, n) + item * n


def hostile() -> dict[str, bytes]:
    """Valid-but-expensive inputs under 16 KiB that our decoder accepts (refused inputs stop
    at the first bad byte and cost less) and one refused at the very end."""
    nest = b"\x81" * 14 + b"\x80"  # in the outer array: the deepest max_depth=16 allows
    ints32 = b"".join(b"\x1a" + struct.pack(">I", (i + 1) << 16) + b"\x00" for i in range(2000))
    out = {
        "16k empty arrays": _fill(b"\x80"),
        "16k empty maps": _fill(b"\xa0"),
        "16k one-byte ints": _fill(b"\x00"),
        "8k [0] arrays": _fill(b"\x81\x00"),
        "5k {0: 0} maps": _fill(b"\xa1\x00\x00"),
        "5k half floats": _fill(b"\xf9\x3c\x01"),
        "1k nestings of 16 arrays": _fill(nest),
        "500 nestings of 16 maps": _fill(b"\xa1\x00" * 14 + b"\xa0"),
        "map of 2000 colliding 32-bit keys": cbor.head(5, 2000) + ints32,
        "8k one-char texts": _fill(b"\x61x"),
        "4k 4-byte UTF-8 chars": cbor.head(3, 16376) + "\U0001f4a1".encode() * 4094,
    }
    for name in ("16k one-byte ints", "500 nestings of 16 maps"):
        bad = bytearray(out[name])
        bad[-1] = 0xF7  # undefined, the last item: all the work, then refused
        out[name + ", refused at the end"] = bytes(bad)
    for name, data in out.items():
        assert len(data) <= HOSTILE_LIMIT, (name, len(data))
    return out


def timings(fn, data: bytes, rounds: int, budget: float = 0.004) -> list[float]:
    """µs per call, one figure per round; each round repeats the call for ~``budget`` s."""
    t0 = time.perf_counter()
    fn(data)
    once = max(time.perf_counter() - t0, 1e-7)
    reps = max(1, int(budget / once))
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn(data)
        out.append((time.perf_counter() - t0) / reps * 1e6)
    return out


def _try(fn):
    def call(data):
        try:
            fn(data)
        except ValueError:
            pass

    return call


def peak_alloc(fn, data: bytes) -> int:
    tracemalloc.start()
    try:
        fn(data)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main(argv: list[str]) -> int:
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 15
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    ours = _try(lambda d: loads(d, tags=(18,)))
    theirs = _try(cbor2.loads)

    def line(name: str, data: bytes) -> float:
        a = timings(ours, data, rounds)
        b = timings(theirs, data, rounds)
        ma, mb = statistics.median(a), statistics.median(b)
        print(
            f"{name:<36} {len(data):6d} B  ours {min(a):8.1f} {ma:8.1f} {max(a):8.1f}"
            f"   cbor2 {min(b):8.1f} {mb:8.1f} {max(b):8.1f}"
            f"   x{min(a) / min(b):.2f} / x{ma / mb:.2f}"
        )
        return min(a)

    print(
        f"µs per decode, min / median / max over {rounds} rounds;"
        " x = ours/cbor2 on the mins / on the medians (the min is the least disturbed)"
    )
    pack, envelope = senml_pack(), cose_sign1()
    assert loads(pack) == cbor2.loads(pack)
    mine, ref = loads(envelope, tags=(18,)), cbor2.loads(envelope)
    assert mine.tag == ref.tag == 18 and list(mine.value[2:]) == list(ref.value[2:])
    honest = line("(i) SenML pack, 101 records", pack)
    line("(ii) COSE_Sign1, 3 kB payload", envelope)
    print(f"(iii) hostile inputs under {HOSTILE_LIMIT} bytes:")
    worst = (0.0, "", 0)
    for name, data in hostile().items():
        best = line("  " + name, data)
        peak = peak_alloc(ours, data)
        print(f"{'':38} peak {peak / 1024:7.1f} KiB = {peak / len(data):5.1f} x input")
        worst = max(worst, (best / len(data), name, peak, best))
    per_byte, name, peak, best = worst
    print(
        f"worst hostile (min, per byte): {name}, {best:.1f} µs = {best / honest:.1f} x the"
        f" SenML pack; per byte {per_byte * 1000:.0f} ns = {per_byte / (honest / len(pack)):.1f}"
        f" x the pack's; peak {peak / 1024:.1f} KiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

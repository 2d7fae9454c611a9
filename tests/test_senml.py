"""Window packs: byte-identical to cbor2 of the documented records, and resolvable."""

import json

import cbor2
from hypothesis import given
from hypothesis import strategies as st

from edge import senml
from edge.window import Window, window_start
from provisioning.senml_decode import SenMLError, resolve

SERIES = [
    senml.Series("bme280", "temperature", "temperature", "Cel", 0.01),
    senml.Series("bme280", "pressure", "pressure", "Pa", 1.0),
    senml.Series("sds011", "pm2_5", "pm2_5", "ug/m3", 0.1),
]


def reference(pole, window, bt):
    """The pack as plain dicts, written from docs/wire-format.md, for cbor2 to encode."""
    recs = [{-2: pole + "/", -3: bt, 0: "window", 1: "s", 2: window.length}]
    for s in SERIES:
        st_ = window.series.get(s.key)
        base = f"{s.key[0]}/{s.key[1]}/"
        unit = {"temperature": "Cel", "pressure": "Pa", "pm2_5": "ug/m3"}[s.key[1]]
        if st_ is None:
            recs.append({0: base + "count", 1: "count", 2: 0})
            continue
        mean = min(max(round(st_.total / st_.count, s.decimals), st_.lo), st_.hi)  # in [min, max]
        recs.append({0: base + "mean", 1: unit, 2: float(mean)})
        recs.append({0: base + "min", 1: unit, 2: float(st_.lo)})
        recs.append({0: base + "max", 1: unit, 2: float(st_.hi)})
        recs.append({0: base + "count", 1: "count", 2: st_.count})
    return recs


samples = st.lists(st.floats(-40, 85, allow_nan=False), max_size=30)


@given(samples, samples, st.integers(0, 2**31))
def test_pack_is_cbor2_of_documented_records(temps, pms, bt):
    w = Window(0, 60)
    for t in temps:
        w.add(("bme280", "temperature"), t)
    for p in pms:
        w.add(("sds011", "pm2_5"), abs(p))
    enc = senml.WindowPackEncoder("nl-ex-0001", SERIES)
    assert enc.encode(w, bt) == cbor2.dumps(reference("nl-ex-0001", w, bt))


@given(st.lists(st.floats(-40, 85, allow_nan=False), min_size=1, max_size=30))
def test_resolved_values_match_window_statistics(temps):
    w = Window(1_800_000_000, 60)
    for t in temps:
        w.add(("bme280", "temperature"), t)
    pack = cbor2.loads(senml.WindowPackEncoder("p1", SERIES).encode(w, w.end))
    recs = {r.name: r for r in resolve(pack)}
    assert recs["p1/window"].value == 60
    assert recs["p1/bme280/temperature/count"].value == len(temps)
    assert abs(recs["p1/bme280/temperature/mean"].value - sum(temps) / len(temps)) <= 0.005 + 1e-9
    assert recs["p1/bme280/temperature/min"].value == min(temps)
    assert recs["p1/bme280/temperature/max"].value == max(temps)
    assert all(r.time == w.end for r in recs.values())
    assert recs["p1/bme280/temperature/mean"].unit == "Cel"
    assert recs["p1/sds011/pm2_5/count"].value == 0


def test_cbor_pack_is_smaller_than_senml_json():
    w = Window(0, 60)
    for i in range(60):
        w.add(("bme280", "temperature"), 20 + i / 100)
        w.add(("bme280", "pressure"), 101325.0 + i)
        w.add(("sds011", "pm2_5"), 12.3)
    data = senml.WindowPackEncoder("nl-ex-0001", SERIES).encode(w, 1_800_000_000)
    as_json = json.dumps(
        [
            {"bn" if k == -2 else "bt" if k == -3 else "nuv"[k]: v for k, v in r.items()}
            for r in cbor2.loads(data)
        ],
        separators=(",", ":"),
    )
    assert len(data) < len(as_json.encode())


def test_window_alignment():
    assert window_start(1_800_000_061.5, 60) == 1_800_000_060
    w = Window(120, 60)
    assert w.end == 180


def test_resolve_applies_base_fields_and_rejects_bad_packs():
    recs = resolve([{-2: "a/", -3: 1_800_000_000, -4: "Cel", -5: 10, 0: "x", 2: 1.5, 6: -5}])
    assert (recs[0].name, recs[0].value, recs[0].unit, recs[0].time) == (
        "a/x",
        11.5,
        "Cel",
        1_799_999_995,
    )
    for bad in ([], [1], [{0: "-bad", 2: 1}], [{0: "x", 2: 1, 3: "s"}], [{0: "x"}], [{0: 1, 2: 1}]):
        try:
            resolve(bad)
        except SenMLError:
            continue
        raise AssertionError(f"accepted {bad!r}")


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50))
def test_mean_is_always_within_min_and_max(values):
    """Rounding to the resolution, or a float sum, never puts the mean outside the samples."""
    w = Window(0, 60)
    for v in values:
        w.add(("sds011", "pm2_5"), v)
    enc = senml.WindowPackEncoder("p", [senml.Series("sds011", "pm2_5", "pm2_5", "ug/m3", 0.1)])
    recs = {r.name: r.value for r in resolve(cbor2.loads(enc.encode(w, 0)))}
    assert recs["p/sds011/pm2_5/min"] <= recs["p/sds011/pm2_5/mean"] <= recs["p/sds011/pm2_5/max"]


def test_partial_window_says_how_much_it_covers():
    w = Window(60, 60, opened=97.4)
    enc = senml.WindowPackEncoder("p", SERIES)
    recs = resolve(cbor2.loads(enc.encode(w, w.end, covered=w.covered())))
    assert (recs[0].name, recs[0].value, recs[0].time) == ("p/window", 23, 120)
    assert Window(60, 60, opened=30).covered() == 60  # opened before its start: a full window
    assert Window(60, 60).covered(until=90.2) == 30  # sealed early, at a clean stop

"""The portable core under MicroPython: byte-identical SenML/CBOR to CPython's vectors,
windows, the privacy gate's counting and suppression, DP noise, HMAC, health, lamp state."""

import mpyshim  # noqa: F401  (os.urandom on the WebAssembly port)
import struct

import vectors
from edge import cbor, dp, senml
from edge.gate import CountBins, encode_bin, protect, sum_protected
from edge.health import Health
from edge.lamp import LampMonitor
from edge.unique import UniqueCounter, hmac_sha256
from edge.window import Window, window_start

PACK = (
    "85a5216b6e6c2d65782d303030312f221a6b49d200006677696e646f7701617302183ca30077626d65"
    "3238302f74656d70657261747572652f6d65616e016343656c02fb4035800000000000a30076626d65"
    "3238302f74656d70657261747572652f6d696e016343656c02fb4035400000000000a30076626d6532"
    "38302f74656d70657261747572652f6d6178016343656c02fb4035c00000000000a3007818626d6532"
    "38302f74656d70657261747572652f636f756e740165636f756e740203"
)
BIN = (
    "85a5216b6e6c2d65782d303030312f221a6b49d584006362696e01617302190384a3007272616461"
    "722f70656f706c652f636f756e740165636f756e740200a2007772616461722f70656f706c652f73"
    "75707072657373656404f5a3007472616461722f62696379636c65732f636f756e740165636f756e"
    "74021819a200781972616461722f62696379636c65732f7375707072657373656404f4"
)
CBOR = "d2844101a10127617884fb3ff800000000000021f6f5"
HMAC = "171e30afd606b7941882dfc7a513bd4ff2eb154230fc89e7b94bd6dea8059486"


def _check(name, got, want):
    if got.hex() != want:
        raise AssertionError("%s: got %s, want %s" % (name, got.hex(), want))


def test_cbor_vectors():
    assert len(vectors.cbor_cases()) == len(vectors.CBOR_HEX)
    for name, value in vectors.cbor_cases():
        _check(name, cbor.dumps(value), vectors.CBOR_HEX[name])


def test_window_pack_vectors():
    assert len(vectors.window_cases()) == len(vectors.WINDOW_HEX) >= 3
    for case in vectors.window_cases():
        _check(case[0], vectors.encode_window_case(case), vectors.WINDOW_HEX[case[0]])


def test_gate_and_health_vectors():
    for name, data in vectors.other_cases():
        _check(name, data, vectors.OTHER_HEX[name])


def test_senml_window_pack_is_byte_identical():
    w = Window(1799999940, 60)
    for v in (21.5, 21.25, 21.75):
        w.add(("bme280", "temperature"), v)
    enc = senml.WindowPackEncoder(
        "nl-ex-0001", [senml.Series("bme280", "temperature", "temperature", "Cel", 0.01)]
    )
    assert enc.encode(w, w.end).hex() == PACK


def test_count_bin_is_byte_identical():
    values = [(("radar", "people"), protect(3)), (("radar", "bicycles"), protect(23))]
    assert encode_bin("nl-ex-0001", 1800000900, 900, values).hex() == BIN


def test_cbor_vector():
    data = cbor.dumps(cbor.Tag(18, [b"\x01", cbor.Map([(1, -8)]), "x", [1.5, -2, None, True]]))
    assert data.hex() == CBOR


def test_round_is_cpythons():
    # MicroPython's own round() gives 16.08, 11.3, 34.56 here; CPython's (and ours) not.
    assert senml._round is senml.round_exact
    for x, d, want in (
        (16.085, 2, 16.09),
        (11.295, 2, 11.29),
        (34.555, 2, 34.55),
        (2.675, 2, 2.67),
        (0.125, 2, 0.12),
        (0.375, 2, 0.38),
        (2.5, 0, 2.0),
        (1e300, 3, 1e300),
        (123.456, 9, 123.456),
        (5e-324, 2, 0.0),
    ):
        got = senml.round_exact(x, d)
        assert struct.pack(">d", got) == struct.pack(">d", want), (x, d, got)
    assert struct.pack(">d", senml.round_exact(-0.004, 2)) == b"\x80" + bytes(7)
    nan = senml.round_exact(float("nan"), 2)
    assert nan != nan and senml.round_exact(float("-inf"), 1) == float("-inf")


def test_small_counts_identical():
    packs = set()
    for c in range(10):
        packs.add(encode_bin("p", 900, 900, [(("r", "people"), protect(c))]))
    assert len(packs) == 1
    assert [protect(c)[0] for c in (10, 12, 13, 17, 18)] == [10, 10, 15, 15, 20]
    assert protect(9) == (0, True) and protect(10) == (10, False)
    assert sum_protected([(0, True), (15, False), (20, False), (0, True)]) == 35


def test_count_bins_publish_every_series_and_forget():
    bins = CountBins([("r", "people"), ("r", "bicycles")], bin_s=900)
    assert not bins.due(100)
    bins.add(("r", "people"), 12, 100)
    bins.add(("x", "undeclared"), 99, 110)
    assert bins.due(900) and not bins.due(899)
    end, covered, values = bins.close(905)
    assert (end, covered) == (900, 800)  # opened at its first count, at 100
    assert values == [(("r", "people"), (10, False)), (("r", "bicycles"), (0, True))]
    assert bins.close(1805)[2] == [(("r", "people"), (0, True)), (("r", "bicycles"), (0, True))]
    try:
        CountBins([("r", "people")], bin_s=30)
    except ValueError:
        return
    raise AssertionError("a 30 s bin was accepted")


def test_window_statistics():
    w = Window(0, 60)
    for v in (3.0, 1.0, 2.0):
        w.add(("s", "f"), v)
    st = w.series[("s", "f")]
    assert (st.count, st.lo, st.hi, st.mean()) == (3, 1.0, 3.0, 2.0)
    assert w.end == 60 and window_start(1799999999.5, 60) == 1799999940


def test_hmac_and_unique_counter():
    assert hmac_sha256(b"k" * 32, bytes([2, 0xA1, 0xB2, 0xC3, 0xD4, 0xE5])).hex() == HMAC
    u = UniqueCounter()
    for i in range(5):
        u.add(bytes([2, 0, 0, 0, 0, i]))
        u.add(bytes([2, 0, 0, 0, 0, i]))
    assert u.close() == 5 and u.close() == 0


def test_dp_noise_runs_and_is_centred():
    # randbelow needed int.bit_length(), which MicroPython lacks.
    assert dp.epsilon_ratio(0.5) == (1, 2)
    for n in (2, 255, 256, 257, 65536, 2**40 + 3):
        for _ in range(20):
            assert 0 <= dp.randbelow(n) < n
    draws = [dp.discrete_laplace(1, 2) for _ in range(400)]
    assert all(isinstance(k, int) for k in draws)
    assert abs(sum(draws) / len(draws)) < 1.0 and len(set(draws)) > 3


def test_health_records_sorted():
    h = Health()
    h.count("b")
    h.count("a", 2)
    h.sensor_state("z", True)
    assert h.raise_alarm("x", "why") and not h.raise_alarm("x")
    items = h.items()
    assert items[0] == ("sensor/z/up", True)
    assert items[1] == ("counter/a", 2)
    assert h.clear_alarm("x") and not h.clear_alarm("x")


def test_lamp_monitor_states():
    lamp = LampMonitor(1.0, debounce_s=1.0, settle_s=2.0)
    assert lamp.update(True, 0.0, 0.0) == "settling"
    assert lamp.update(True, 0.95, 2.5) == "settling"
    assert lamp.update(True, 0.95, 3.6) == "burning"
    assert lamp.update(True, 0.02, 4.0) == "burning"
    assert lamp.update(True, 0.02, 5.1) == "failed"
    assert lamp.update(False, 0.5, 6.0) == "settling"
    assert lamp.update(False, 0.5, 8.5) == "settling"
    assert lamp.update(False, 0.5, 9.5) == "day_burner"

"""The portable core under MicroPython: byte-identical SenML/CBOR to CPython's vectors."""

import mpyshim  # noqa: F401  (os.urandom on the WebAssembly port)

from edge import cbor, senml
from edge.gate import encode_bin, protect
from edge.unique import UniqueCounter, hmac_sha256
from edge.window import Window

PACK = (
    "85a5216b6e6c2d65782d303030312f221a6b49d200006677696e646f7701617302183ca30077626d65"
    "3238302f74656d70657261747572652f6d65616e016343656c02fb4035800000000000a30076626d65"
    "3238302f74656d70657261747572652f6d696e016343656c02fb4035400000000000a30076626d6532"
    "38302f74656d70657261747572652f6d6178016343656c02fb4035c00000000000a3007818626d6532"
    "38302f74656d70657261747572652f636f756e740165636f756e740203"
)
BIN = (
    "83a5216b6e6c2d65782d303030312f221a6b49d584006362696e01617302190384a30072726164617"
    "22f70656f706c652f636f756e740165636f756e7403633c3130a3007472616461722f62696379636c"
    "65732f636f756e740165636f756e74021819"
)
CBOR = "d2844101a10127617884fb3ff800000000000021f6f5"
HMAC = "171e30afd606b7941882dfc7a513bd4ff2eb154230fc89e7b94bd6dea8059486"


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
    assert encode_bin("nl-ex-0001", 1800000000, 900, values).hex() == BIN


def test_cbor_vector():
    data = cbor.dumps(cbor.Tag(18, [b"\x01", cbor.Map([(1, -8)]), "x", [1.5, -2, None, True]]))
    assert data.hex() == CBOR


def test_small_counts_identical():
    packs = set()
    for c in range(10):
        packs.add(encode_bin("p", 0, 900, [(("r", "people"), protect(c))]))
    assert len(packs) == 1


def test_window_statistics():
    w = Window(0, 60)
    for v in (3.0, 1.0, 2.0):
        w.add(("s", "f"), v)
    st = w.series[("s", "f")]
    assert (st.count, st.lo, st.hi, st.mean()) == (3, 1.0, 3.0, 2.0)


def test_hmac_and_unique_counter():
    assert hmac_sha256(b"k" * 32, bytes([2, 0xA1, 0xB2, 0xC3, 0xD4, 0xE5])).hex() == HMAC
    u = UniqueCounter()
    for i in range(5):
        u.add(bytes([2, 0, 0, 0, 0, i]))
        u.add(bytes([2, 0, 0, 0, 0, i]))
    assert u.close() == 5 and u.close() == 0

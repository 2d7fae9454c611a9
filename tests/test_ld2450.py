"""LD2450: the reference vector, the field codec, crossing counts against a simulated
street's ground truth, and recovery from truncated and misaligned frames."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge.drivers.ld2450 import LD2450, decode_frame, signed
from host_sim.devices.ld2450 import LD2450Sim, Street, frame, magnitude
from host_sim.serial_pty import LoopbackUART


def test_reference_vector():
    raw = bytes.fromhex("0E03B18610004001")
    x, y, v, res = (int.from_bytes(raw[i : i + 2], "little") for i in range(0, 8, 2))
    assert (signed(x), signed(y), signed(v), res) == (-782, 1713, -16, 320)
    assert frame([(-782, 1713, -16)])[4:12] == raw
    assert decode_frame(frame([])) == []


@given(st.integers(-0x7FFF, 0x7FFF))
def test_sign_magnitude_round_trip(v):
    assert signed(magnitude(v)) == v


def run_street(people: float, bikes: float, seconds: float, seed: int = 4):
    uart = LoopbackUART(LD2450Sim(lambda: []))
    street = Street(people, bikes, seed=seed, clock=lambda: uart.now)
    uart.device.source = street
    drv = LD2450(uart)
    counted = {"people": 0, "bicycles": 0}
    for _ in range(int(seconds / 0.2)):
        uart.advance(0.1)  # the world moves frame by frame, the driver is polled at 5 Hz
        uart.advance(0.1)
        out = drv.read()
        for k in counted:
            counted[k] += out[k] if out else 0
    return counted, street.crossed


def test_counts_match_the_street():
    counted, truth = run_street(people=6, bikes=3, seconds=300)
    assert truth["people"] >= 10 and truth["bicycles"] >= 5
    assert abs(counted["people"] - truth["people"]) <= max(1, truth["people"] // 10)
    assert abs(counted["bicycles"] - truth["bicycles"]) <= max(1, truth["bicycles"] // 10)


def test_no_frames_no_counts_and_recovery():
    sim = LD2450Sim(lambda: [(-3000.0, 2000.0, 140.0)])
    uart = LoopbackUART(sim)
    drv = LD2450(uart)
    assert drv.read() is None
    sim.truncate_next = True
    uart.advance(0.1)
    uart.advance(0.1)
    assert drv.read() == {"people": 0, "bicycles": 0}
    sim.misalign = True
    uart.advance(0.1)
    assert drv.read() == {"people": 0, "bicycles": 0}
    out = drv.read()
    assert out is None


def test_read_returns_counts_only():
    counted, _ = run_street(people=10, bikes=0, seconds=30)
    assert set(counted) == {"people", "bicycles"}

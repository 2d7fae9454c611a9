"""PMS5003: reference command bytes, frame layout, round trips, recovery, a real pty."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.drivers.pms5003 import PMS5003, command
from edge.errors import ChecksumError, FrameError
from host_sim.devices.pms5003 import PMS5003Sim, frame
from host_sim.serial_pty import LoopbackUART
from tests.helpers import read_through_pty

VALUES = {
    "pm1_0": 8,
    "pm2_5": 12,
    "pm10": 20,
    "n0_3": 1500,
    "n0_5": 400,
    "n1_0": 90,
    "n2_5": 12,
    "n5_0": 3,
    "n10": 1,
}


def make(values=VALUES):
    state = {"v": dict(values)}
    sim = PMS5003Sim(lambda: state["v"])
    uart = LoopbackUART(sim)
    drv = PMS5003(uart)
    drv.start()
    uart.read()  # the reply to "active mode"
    return sim, uart, drv


def test_reference_commands_and_frame_layout():
    assert command(0xE2) == bytes.fromhex("424DE200000171")
    assert command(0xE4, 0, 0) == bytes.fromhex("424DE400000173")
    assert command(0xE4, 0, 1) == bytes.fromhex("424DE400010174")
    assert command(0xE1, 0, 1) == bytes.fromhex("424DE100010171")
    f = frame(8, 12, 20, (1500, 400, 90, 12, 3, 1))
    assert len(f) == 32 and f[:4] == b"\x42\x4d\x00\x1c"
    assert int.from_bytes(f[30:], "big") == sum(f[:30])


@given(
    st.integers(0, 1000),
    st.integers(0, 1000),
    st.integers(0, 1000),
    st.lists(st.integers(0, 65535), min_size=6, max_size=6),
)
def test_round_trip(pm1, pm25, pm10, counts):
    keys = ("n0_3", "n0_5", "n1_0", "n2_5", "n5_0", "n10")
    values = {"pm1_0": pm1, "pm2_5": pm25, "pm10": pm10, **dict(zip(keys, counts, strict=True))}
    _, uart, drv = make(values)
    uart.advance(2.3)
    assert drv.read() == values


@given(st.binary(max_size=60), st.integers(1, 31))
def test_noise_and_split_frames(noise, cut):
    _, uart, drv = make()
    good = frame(8, 12, 20, (1500, 400, 90, 12, 3, 1))
    uart.inject(noise.replace(b"\x42", b"\x00") + good[:cut])
    try:
        drv.read()
    except (ChecksumError, FrameError):
        pass
    uart.inject(good[cut:])
    assert drv.read() == VALUES


def test_faults_then_recovery():
    sim, uart, drv = make()
    sim.corrupt_next = True
    uart.advance(2.3)
    with pytest.raises(ChecksumError):
        drv.read()
    sim.truncate_next = True
    uart.advance(2.3)
    uart.advance(2.3)
    assert drv.read() == VALUES
    sim.misalign = True
    uart.advance(2.3)
    assert drv.read() == VALUES


def test_sleep_wake_and_passive_mode():
    sim, uart, drv = make()
    drv.sleep()
    uart.advance(10)
    uart.read()
    assert drv.read() is None and sim.awake is False
    drv.wake()
    drv.passive()
    uart.advance(10)
    assert drv.read() is None  # passive: nothing unless asked
    drv.request_read()
    uart.advance(0)
    assert drv.read() == VALUES


def test_through_a_real_pty():
    assert read_through_pty(PMS5003Sim(lambda: VALUES), PMS5003, 9600, step_s=1.0) == VALUES

"""SDS011: reference vectors, round trips, recovery from noise, and a real pty."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.drivers.sds011 import SDS011, command
from edge.errors import ChecksumError, FrameError, Implausible
from host_sim.devices.sds011 import SDS011Sim
from host_sim.serial_pty import LoopbackUART
from tests.helpers import read_through_pty

VECTOR = bytes.fromhex("AAC07B00C80160A145AB")


def make(pm=(12.3, 45.6)):
    state = {"v": {"pm2_5": pm[0], "pm10": pm[1]}}
    sim = SDS011Sim(lambda: state["v"])
    uart = LoopbackUART(sim)
    drv = SDS011(uart)
    drv.start()
    return sim, uart, drv, state


def test_reference_vectors():
    sim, uart, drv, _ = make()
    assert sim.frame(12.3, 45.6) == VECTOR
    uart.inject(VECTOR)
    assert drv.read() == {"pm2_5": 12.3, "pm10": 45.6}
    assert command(0x06, 1, 0) == bytes.fromhex("AAB40601" + "00" * 11 + "FFFF05AB")
    assert command(0x06, 1, 1)[-2] == 0x06


@given(st.integers(0, 9999), st.integers(0, 19999))
def test_round_trip(p25, p10):
    sim, uart, drv, state = make((p25 / 10, p10 / 10))
    uart.advance(1.0)
    assert drv.read() == {"pm2_5": p25 / 10, "pm10": p10 / 10}


@given(st.binary(max_size=40), st.integers(1, 9))
def test_noise_and_split_frames_never_lose_the_next_good_frame(noise, cut):
    _, uart, drv, _ = make()
    noise = noise.replace(b"\xaa", b"\x00")
    uart.inject(noise + VECTOR[:cut])
    try:
        drv.read()
    except (ChecksumError, FrameError):
        pass
    uart.inject(VECTOR[cut:])
    assert drv.read() == {"pm2_5": 12.3, "pm10": 45.6}


def test_faults_are_reported_then_recovered():
    sim, uart, drv, _ = make()
    sim.corrupt_next = True
    uart.advance(1.0)
    with pytest.raises(ChecksumError):
        drv.read()
    sim.truncate_next = True
    uart.advance(1.0)
    uart.advance(1.0)  # a truncated frame followed by a good one
    assert drv.read() == {"pm2_5": 12.3, "pm10": 45.6}
    sim.misalign = True
    uart.advance(1.0)
    assert drv.read() == {"pm2_5": 12.3, "pm10": 45.6}
    sim.out_of_range = True
    uart.advance(1.0)
    with pytest.raises(Implausible):
        drv.read()


def test_sleep_and_wake_like_the_real_sensor():
    sim, uart, drv, _ = make()
    drv.sleep()
    uart.advance(5.0)
    assert sim.awake is False
    uart.read()  # the reply to the sleep command
    uart.write(command(0x02, 1, 1))  # ignored while asleep
    assert sim.active is True
    uart.advance(5.0)
    assert drv.read() is None  # no data while asleep
    drv.wake()
    uart.advance(1.0)
    assert drv.read() == {"pm2_5": 12.3, "pm10": 45.6}


def test_query_mode():
    sim, uart, drv, _ = make()
    uart.write(command(0x02, 1, 1))
    assert sim.active is False
    uart.advance(5.0)
    uart.read()
    uart.write(command(0x04))
    uart.advance(0.0)
    assert drv.read() == {"pm2_5": 12.3, "pm10": 45.6}


def test_through_a_real_pty_with_pyserial():
    sim = SDS011Sim(lambda: {"pm2_5": 7.5, "pm10": 9.9})
    assert read_through_pty(sim, SDS011, 9600) == {"pm2_5": 7.5, "pm10": 9.9}

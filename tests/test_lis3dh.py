"""LIS3DH tilt driver against the register-level simulator and the reference vector."""

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.descriptors import load_sensor
from edge.drivers.lis3dh import LIS3DH
from edge.errors import Implausible, NoDevice, NotReady
from host_sim.devices.lis3dh import LIS3DHSim, encode, tilt_to_mg
from host_sim.i2c import SimI2C

VECTOR = bytes.fromhex("70050000403e")


class Clock:
    def __init__(self):
        self.t = 50.0

    def __call__(self):
        return self.t


def rig(tilt=5.0, azimuth=0.0, sway=0.0, window=10, address=0x18):
    clock = Clock()
    world = {"tilt": tilt, "azimuth": azimuth, "sway": sway}
    sim = LIS3DHSim(lambda: dict(world), clock=clock)
    bus = SimI2C()
    bus.attach(address, sim)
    return clock, world, sim, bus, LIS3DH(bus, address, window=window)


def poll(clock, drv, n, dt=0.1):
    r = None
    for _ in range(n):
        clock.t += dt
        r = drv.read()
    return r


class FixedRegs:
    """Answers register reads from a dict, for decoding the vector without the simulator."""

    def __init__(self, regs):
        self.regs = regs
        self.writes = []

    def readfrom_mem(self, addr, reg, n, addrsize=8):
        return self.regs[reg][:n]

    def readfrom_mem_into(self, addr, reg, buf, addrsize=8):
        buf[:] = self.regs[reg][: len(buf)]

    def writeto_mem(self, addr, reg, buf, addrsize=8):
        self.writes.append((reg, bytes(buf)))


def test_vector_sim_encodes():
    x, y, z = tilt_to_mg(5.0, 0.0)
    assert encode(x, y, z) == VECTOR


def test_vector_driver_decodes():
    bus = FixedRegs({0x0F: b"\x33", 0x27: b"\x0f", 0xA8: VECTOR})
    drv = LIS3DH(bus, window=1)
    drv.start()
    assert bus.writes == [(0x20, b"\x57"), (0x23, b"\x88")]
    r = drv.read()
    assert r["tilt"] == pytest.approx(4.99, abs=0.005)
    assert math.degrees(math.atan2(87, 996)) == pytest.approx(r["tilt"])
    assert r["sway"] == 0.0


def test_power_on_defaults_and_powered_down_data_is_zero():
    clock, _, sim, bus, _ = rig()
    assert bus.readfrom_mem(0x18, 0x0F, 1) == b"\x33"
    assert bus.readfrom_mem(0x18, 0x20, 1) == b"\x07"
    assert bus.readfrom_mem(0x18, 0x1E, 1) == b"\x10"
    assert bus.readfrom_mem(0x18, 0x23, 1) == b"\x00"
    clock.t += 1.0
    assert bus.readfrom_mem(0x18, 0x27, 1) == b"\x00"  # no data ready while powered down
    assert bus.readfrom_mem(0x18, 0xA8, 6) == bytes(6)


def test_auto_increment_only_with_msb():
    clock, _, sim, bus, drv = rig()
    drv.start()
    clock.t += 0.1
    burst = bus.readfrom_mem(0x18, 0xA8, 6)
    assert burst == VECTOR
    assert bus.readfrom_mem(0x18, 0x28, 6) == bytes([VECTOR[0]]) * 6  # no increment
    assert bus.readfrom_mem(0x18, 0x20 | 0x80, 4) == b"\x57\x00\x00\x88"
    bus.writeto_mem(0x18, 0x20 | 0x80, b"\x47\x00\x00\x08")  # burst write CTRL_REG1..4
    assert bus.readfrom_mem(0x18, 0xA0, 4) == b"\x47\x00\x00\x08"
    bus.writeto_mem(0x18, 0x21, b"\x01\x02")  # no increment: both bytes land in 0x21
    assert bus.readfrom_mem(0x18, 0xA1, 2) == b"\x02\x00"


def test_read_only_registers_ignore_writes():
    _, _, sim, bus, _ = rig()
    bus.writeto_mem(0x18, 0x0F, b"\x00")
    assert bus.readfrom_mem(0x18, 0x0F, 1) == b"\x33"


def test_status_data_ready_cleared_by_reading_high_bytes():
    clock, _, sim, bus, drv = rig()
    drv.start()
    clock.t += 0.015
    assert bus.readfrom_mem(0x18, 0x27, 1)[0] & 0x08
    bus.readfrom_mem(0x18, 0xA8, 6)
    assert bus.readfrom_mem(0x18, 0x27, 1) == b"\x00"
    clock.t += 0.025  # two more samples, the first unread: overrun
    assert bus.readfrom_mem(0x18, 0x27, 1) == b"\xff"


def test_other_modes_are_left_justified():
    # normal mode (10 bit, 4 mg/digit at +-2 g) and +-4 g high resolution (2 mg/digit)
    assert encode(1000, 0, -1000, reg1=0x57, reg4=0x00) == (
        (250 << 6).to_bytes(2, "little") + bytes(2) + (-250 << 6 & 0xFFFF).to_bytes(2, "little")
    )
    assert encode(1000, 0, 0, reg1=0x57, reg4=0x98)[:2] == (500 << 4).to_bytes(2, "little")
    assert encode(1000, 0, 0, reg1=0x5F, reg4=0x00)[:2] == (62 << 8).to_bytes(2, "little")
    assert encode(1000, 0, 0, reg1=0x57, reg4=0xC8)[:2] == (1000 << 4).to_bytes(2, "big")


def test_boot_bit_clears_itself_and_keeps_the_configuration():
    clock, _, sim, bus, drv = rig()
    drv.start()
    bus.writeto_mem(0x18, 0x24, b"\x80")  # CTRL_REG5 BOOT: reload the trimming values
    assert bus.readfrom_mem(0x18, 0x24, 1) == b"\x80"
    clock.t += 0.005
    assert bus.readfrom_mem(0x18, 0x24, 1) == b"\x00"
    assert bus.readfrom_mem(0x18, 0xA0, 4) == b"\x57\x00\x00\x88"


@pytest.mark.parametrize(
    "reg1, reg4, bits, mg_per_digit",
    [
        (0x57, 0x88, 12, 1),  # high resolution, +-2 g
        (0x57, 0x00, 10, 4),  # normal, +-2 g
        (0x5F, 0x00, 8, 16),  # low power, +-2 g
        (0x57, 0x98, 12, 2),  # +-4 g
        (0x57, 0xA8, 12, 4),  # +-8 g
        (0x57, 0xB8, 12, 12),  # +-16 g
        (0x5F, 0x30, 8, 192),  # low power, +-16 g
    ],
)
def test_modes_and_full_scales_on_the_bus(reg1, reg4, bits, mg_per_digit):
    clock, _, sim, bus, _ = rig(tilt=90.0)  # x along gravity: x = +1000 mg, z = 0
    bus.writeto_mem(0x18, 0xA0, bytes((reg1, 0, 0, reg4)))
    clock.t += 0.011
    assert bus.readfrom_mem(0x18, 0x27, 1)[0] & 0x08
    x, y, z = struct.unpack("<hhh", bus.readfrom_mem(0x18, 0xA8, 6))
    assert x % (1 << (16 - bits)) == 0  # left-justified
    assert (x >> (16 - bits)) == round(1000 / mg_per_digit)
    assert abs(z >> (16 - bits)) <= 1


def test_low_power_top_rate_is_5376_hz():
    clock, _, sim, bus, _ = rig()
    bus.writeto_mem(0x18, 0x20, b"\x9f")  # ODR 1001 with LPen: 5.376 kHz
    assert sim._odr() == 5376
    bus.writeto_mem(0x18, 0x20, b"\x97")  # ODR 1001, normal: 1.344 kHz
    assert sim._odr() == 1344


def test_missing_device_and_wrong_chip_are_no_device():
    bus = SimI2C()
    with pytest.raises(NoDevice):
        LIS3DH(bus).start()
    with pytest.raises(NoDevice):
        LIS3DH(FixedRegs({0x0F: b"\x32"})).start()
    clock, _, sim, bus, drv = rig()
    drv.start()
    bus.unplug(0x18)
    with pytest.raises(NoDevice):
        poll(clock, drv, 1)


def test_none_until_window_full_then_running_average():
    clock, world, sim, bus, drv = rig(tilt=5.0, window=10)
    drv.start()
    results = [poll(clock, drv, 1) for _ in range(10)]
    assert results[:9] == [None] * 9
    assert results[9]["tilt"] == pytest.approx(4.99, abs=0.01)
    world["tilt"] = 10.0
    r = poll(clock, drv, 5)
    assert 6.0 < r["tilt"] < 9.0  # half the window moved
    r = poll(clock, drv, 5)
    assert r["tilt"] == pytest.approx(10.0, abs=0.06)


def test_no_new_data_returns_none():
    clock, _, sim, bus, drv = rig(window=1)
    drv.start()
    clock.t += 0.1
    assert drv.read() is not None
    assert drv.read() is None  # same instant: no new sample


def test_brown_out_is_detected_and_reconfigured():
    clock, _, sim, bus, drv = rig(window=2)
    drv.start()
    assert poll(clock, drv, 2) is not None
    sim.brown_out()  # power-down: no more samples
    for _ in range(4):
        assert poll(clock, drv, 1) is None
    with pytest.raises(NotReady):
        poll(clock, drv, 1)
    assert bus.readfrom_mem(0x18, 0x20, 1) == b"\x57"
    assert poll(clock, drv, 1)["tilt"] == pytest.approx(4.99, abs=0.01)


def test_not_gravity_is_implausible():
    clock, _, sim, bus, drv = rig(window=2)
    drv.start()
    poll(clock, drv, 2)
    sim.stuck = True
    sim.regs[0x28:0x2E] = bytes(6)  # outputs stuck at 0 g
    with pytest.raises(Implausible):
        poll(clock, drv, 2)


def test_sway_amplitude_is_recovered():
    clock, _, sim, bus, drv = rig(tilt=3.0, azimuth=30.0, sway=1.0, window=50)
    drv.start()
    r = poll(clock, drv, 50, dt=0.1)
    assert r["tilt"] == pytest.approx(3.0, abs=0.06)
    assert r["sway"] == pytest.approx(1.0, abs=0.05)


def test_no_sway_reads_near_zero():
    clock, _, sim, bus, drv = rig(tilt=7.0, azimuth=200.0, sway=0.0, window=20)
    drv.start()
    assert poll(clock, drv, 20)["sway"] < 0.06


@settings(max_examples=200)
@given(
    tilt=st.floats(min_value=0.0, max_value=180.0),
    azimuth=st.floats(min_value=0.0, max_value=360.0),
)
def test_round_trip_whole_range(tilt, azimuth):
    clock, _, sim, bus, drv = rig(tilt=tilt, azimuth=azimuth, window=3)
    drv.start()
    r = poll(clock, drv, 3)
    # 1 mg per digit, rounding: at most ~0.5*sqrt(2) mg across 1000 mg = 0.04 deg
    assert r["tilt"] == pytest.approx(tilt, abs=0.06)
    assert r["sway"] < 0.06


@pytest.mark.parametrize("tilt", [0.0, 180.0])
def test_an_honest_reading_at_the_edge_of_the_range_is_plausible(tilt):
    fields = load_sensor("lis3dh").fields
    clock, _, sim, bus, drv = rig(tilt=tilt, window=3)
    drv.start()
    r = poll(clock, drv, 3)
    assert fields["tilt"].plausible(r["tilt"]) and fields["sway"].plausible(r["sway"])

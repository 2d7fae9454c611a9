"""BME280: reference vector both ways, round trips over the whole range, chip behaviour."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.drivers.bme280 import BME280, compensate_h, compensate_p, compensate_t
from edge.errors import Implausible, NoDevice, NotReady
from host_sim.devices.bme280 import PUBLISHED_CAL, BME280Sim, data_bytes, raw_for
from host_sim.i2c import SimI2C

VECTOR = bytes.fromhex("4FC9B08132 00764A".replace(" ", ""))


def make(values: dict | None = None) -> tuple[SimI2C, BME280Sim, BME280]:
    state = {"v": values or {"temperature": 20.0, "pressure": 101325.0, "humidity": 50.0}}
    bus = SimI2C()
    sim = BME280Sim(lambda: state["v"])
    bus.attach(0x76, sim)
    drv = BME280(bus)
    drv.start()
    return bus, sim, drv


def test_reference_vector_decodes():
    adc_p = (VECTOR[0] << 12) | (VECTOR[1] << 4) | (VECTOR[2] >> 4)
    adc_t = (VECTOR[3] << 12) | (VECTOR[4] << 4) | (VECTOR[5] >> 4)
    adc_h = (VECTOR[6] << 8) | VECTOR[7]
    t, t_fine = compensate_t(adc_t, PUBLISHED_CAL)
    assert t == 2479
    assert round(compensate_p(adc_p, t_fine, PUBLISHED_CAL) / 256 / 100, 2) == 1006.62
    assert abs(compensate_h(adc_h, t_fine, PUBLISHED_CAL) / 1024 - 68.67) < 0.015  # 1 LSB


def test_reference_vector_encodes_within_one_lsb():
    got = data_bytes(*raw_for(24.79, 100662.0, 68.67))
    assert got[:6] == VECTOR[:6]
    assert abs(int.from_bytes(got[6:], "big") - int.from_bytes(VECTOR[6:], "big")) <= 1


def test_driver_reads_what_the_world_says():
    _, _, drv = make({"temperature": 24.79, "pressure": 100662.0, "humidity": 68.67})
    v = drv.read()
    assert abs(v["temperature"] - 24.79) <= 0.01
    assert abs(v["pressure"] - 100662.0) <= 0.5
    assert abs(v["humidity"] - 68.67) <= 0.01


# The whole operating range, less one LSB at each edge (quantisation may land a hair
# outside, which the driver rightly calls implausible).
@given(
    st.floats(-39.99, 84.99, allow_nan=False),
    st.floats(30001, 109999, allow_nan=False),
    st.floats(0, 100, allow_nan=False),
)
def test_round_trip_over_the_whole_range(t, p, h):
    _, _, drv = make({"temperature": t, "pressure": p, "humidity": h})
    v = drv.read()
    assert abs(v["temperature"] - t) <= 0.01
    assert abs(v["pressure"] - p) <= 0.5
    assert abs(v["humidity"] - h) <= 0.01


def test_power_on_defaults_and_auto_increment():
    bus = SimI2C()
    sim = BME280Sim(lambda: {"temperature": 1, "pressure": 1e5, "humidity": 1})
    bus.attach(0x77, sim)
    assert bus.readfrom_mem(0x77, 0xD0, 1) == b"\x60"
    assert bus.readfrom_mem(0x77, 0xF7, 8) == bytes((0x80, 0, 0, 0x80, 0, 0, 0x80, 0))
    assert bus.readfrom_mem(0x77, 0xF2, 4) == b"\x00\x00\x00\x00"
    # auto-increment: one burst equals byte-by-byte reads
    burst = bus.readfrom_mem(0x77, 0x88, 26)
    assert burst == b"".join(bus.readfrom_mem(0x77, 0x88 + i, 1) for i in range(26))
    drv = BME280(bus, address=0x77)
    drv.start()
    sim.power_on()  # a brown-out: asleep again, data registers at their reset value
    with pytest.raises(NotReady):
        drv.read()
    assert drv.read()["temperature"] == pytest.approx(1.0, abs=0.01)


def test_ctrl_hum_only_after_ctrl_meas_and_forced_mode():
    bus = SimI2C()
    sim = BME280Sim(lambda: {"temperature": 21.0, "pressure": 1e5, "humidity": 40.0})
    bus.attach(0x76, sim)
    bus.writeto_mem(0x76, 0xF2, b"\x01")
    bus.writeto_mem(0x76, 0xF4, bytes((0b00100101,)))  # forced, T and P x1
    data = bus.readfrom_mem(0x76, 0xF7, 8)
    assert data[6:8] != b"\x80\x00"  # humidity latched by this ctrl_meas write
    assert bus.readfrom_mem(0x76, 0xF4, 1)[0] & 0b11 == 0  # back to sleep
    bus.writeto_mem(0x76, 0xF4, bytes((0b00000001,)))  # forced with T skipped
    assert bus.readfrom_mem(0x76, 0xFA, 3) == b"\x80\x00\x00"


def test_soft_reset_restores_defaults():
    bus, sim, drv = make()
    bus.writeto_mem(0x76, 0xE0, b"\xb6")
    assert bus.readfrom_mem(0x76, 0xF4, 1) == b"\x00"
    with pytest.raises(NotReady):
        drv.read()
    assert drv.read()["temperature"] == pytest.approx(20.0, abs=0.01)  # reconfigured itself


def test_missing_or_wrong_chip_is_no_device():
    bus = SimI2C()
    with pytest.raises(NoDevice):
        BME280(bus).start()
    bus2, sim, drv = make()
    bus2.unplug(0x76)
    with pytest.raises(NoDevice):
        drv.read()
    bus2.plug(0x76)
    assert drv.read()["humidity"] == pytest.approx(50.0, abs=0.01)


def test_out_of_range_and_stuck():
    _, sim, drv = make()
    sim.out_of_range = True
    with pytest.raises(Implausible):
        drv.read()
    sim.out_of_range = False
    state = {"t": 10.0}
    sim.source = lambda: {"temperature": state["t"], "pressure": 1e5, "humidity": 50.0}
    first = drv.read()["temperature"]
    sim.stuck = True
    state["t"] = 30.0
    assert drv.read()["temperature"] == first

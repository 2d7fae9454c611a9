"""BME280: reference vector both ways, round trips over the whole range, chip behaviour."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.descriptors import load_sensor
from edge.drivers.bme280 import BME280, compensate_h, compensate_p, compensate_t
from edge.errors import Implausible, NoDevice, NotReady
from host_sim.devices.bme280 import (
    PUBLISHED_CAL,
    BME280Sim,
    data_bytes,
    measure_time_s,
    raw_for,
)
from host_sim.i2c import SimI2C

VECTOR = bytes.fromhex("4FC9B08132 00764A".replace(" ", ""))


class Clock:
    """Fake time for the simulator (seconds); ``poll()`` is the daemon's next poll."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def poll(self, s: float = 1.0) -> None:
        self.t += s


def make(values: dict | None = None, address: int = 0x76):
    """Bus, simulator, started driver and clock, one poll after start() (as the daemon)."""
    state = {"v": values or {"temperature": 20.0, "pressure": 101325.0, "humidity": 50.0}}
    clock = Clock()
    bus = SimI2C()
    sim = BME280Sim(lambda: state["v"], clock=clock)
    bus.attach(address, sim)
    drv = BME280(bus, address=address)
    drv.start()
    clock.poll()
    return bus, sim, drv, clock


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
    _, _, drv, _ = make({"temperature": 24.79, "pressure": 100662.0, "humidity": 68.67})
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
    _, _, drv, _ = make({"temperature": t, "pressure": p, "humidity": h})
    v = drv.read()
    assert abs(v["temperature"] - t) <= 0.01
    assert abs(v["pressure"] - p) <= 0.5
    assert abs(v["humidity"] - h) <= 0.01


def test_power_on_defaults_and_auto_increment():
    clock = Clock()
    bus = SimI2C()
    sim = BME280Sim(lambda: {"temperature": 1, "pressure": 1e5, "humidity": 1}, clock=clock)
    bus.attach(0x77, sim)
    assert bus.readfrom_mem(0x77, 0xD0, 1) == b"\x60"
    assert bus.readfrom_mem(0x77, 0xF7, 8) == bytes((0x80, 0, 0, 0x80, 0, 0, 0x80, 0))
    assert bus.readfrom_mem(0x77, 0xF2, 4) == b"\x00\x00\x00\x00"
    # auto-increment: one burst equals byte-by-byte reads
    burst = bus.readfrom_mem(0x77, 0x88, 26)
    assert burst == b"".join(bus.readfrom_mem(0x77, 0x88 + i, 1) for i in range(26))
    drv = BME280(bus, address=0x77)
    drv.start()
    clock.poll()
    sim.power_on()  # a brown-out: asleep again, data registers at their reset value
    with pytest.raises(NotReady):
        drv.read()
    clock.poll()
    assert drv.read()["temperature"] == pytest.approx(1.0, abs=0.01)


def test_first_read_right_after_start_is_not_ready():
    """Normal mode's first result lands t_measure after the ctrl_meas write: a read in the
    same instant finds the reset values (as on the chip), the next poll has data."""
    bus = SimI2C()
    clock = Clock()
    sim = BME280Sim(lambda: {"temperature": 5.0, "pressure": 1e5, "humidity": 30.0}, clock=clock)
    bus.attach(0x76, sim)
    drv = BME280(bus)
    drv.start()
    with pytest.raises(NotReady):
        drv.read()
    clock.poll()
    assert drv.read()["temperature"] == pytest.approx(5.0, abs=0.01)


def test_ctrl_hum_only_after_ctrl_meas_and_forced_mode():
    clock = Clock()
    bus = SimI2C()
    sim = BME280Sim(lambda: {"temperature": 21.0, "pressure": 1e5, "humidity": 40.0}, clock=clock)
    bus.attach(0x76, sim)
    bus.writeto_mem(0x76, 0xF2, b"\x01")
    assert bus.readfrom_mem(0x76, 0xF2, 1) == b"\x01"
    bus.writeto_mem(0x76, 0xF4, bytes((0b00100101,)))  # forced, T and P x1
    t_meas = measure_time_s(0b00100101, 1)
    assert t_meas == pytest.approx((1.25 + 2.3 + 2.3 + 0.575 + 2.3 + 0.575) / 1000)
    assert bus.readfrom_mem(0x76, 0xF3, 1) == b"\x08"  # measuring
    assert bus.readfrom_mem(0x76, 0xF4, 1)[0] & 0b11 == 0b01
    assert bus.readfrom_mem(0x76, 0xF7, 8) == bytes((0x80, 0, 0, 0x80, 0, 0, 0x80, 0))
    clock.t += t_meas
    assert bus.readfrom_mem(0x76, 0xF3, 1) == b"\x00"
    data = bus.readfrom_mem(0x76, 0xF7, 8)
    assert data[6:8] != b"\x80\x00"  # humidity latched by this ctrl_meas write
    assert bus.readfrom_mem(0x76, 0xF4, 1)[0] & 0b11 == 0  # back to sleep
    bus.writeto_mem(0x76, 0xF2, b"\x00")  # humidity skipped, but not until ctrl_meas
    bus.writeto_mem(0x76, 0xF4, bytes((0b00000001,)))  # forced with T and P skipped
    clock.t += measure_time_s(0b00000001, 0)
    assert bus.readfrom_mem(0x76, 0xF7, 8) == bytes((0x80, 0, 0, 0x80, 0, 0, 0x80, 0))


def test_normal_mode_timing_status_and_standby():
    clock = Clock()
    world = {"temperature": 10.0, "pressure": 1e5, "humidity": 20.0}
    sim = BME280Sim(lambda: dict(world), clock=clock)
    bus = SimI2C()
    bus.attach(0x76, sim)
    bus.writeto_mem(0x76, 0xF2, b"\x01")
    bus.writeto_mem(0x76, 0xF5, bytes((0b101 << 5,)))  # t_sb 1000 ms, filter off
    bus.writeto_mem(0x76, 0xF4, bytes((0b00100111,)))  # normal, T and P x1
    t_meas = measure_time_s(0b00100111, 1)
    assert bus.readfrom_mem(0x76, 0xF3, 1) == b"\x08"
    clock.t += t_meas
    assert bus.readfrom_mem(0x76, 0xF3, 1) == b"\x00"  # standing by
    first = bus.readfrom_mem(0x76, 0xF7, 8)
    world["temperature"] = 30.0
    clock.t += 0.5
    assert bus.readfrom_mem(0x76, 0xF7, 8) == first  # still in standby: same result
    clock.t += 0.5 + t_meas
    assert bus.readfrom_mem(0x76, 0xF7, 8) != first  # the next cycle's result
    assert bus.readfrom_mem(0x76, 0xF4, 1) == b"\x27"  # normal mode stays
    bus.writeto_mem(0x76, 0xF5, b"\x00")  # ignored in normal mode
    assert bus.readfrom_mem(0x76, 0xF5, 1) == bytes((0b101 << 5,))
    bus.writeto_mem(0x76, 0xF4, b"\x24")  # sleep
    bus.writeto_mem(0x76, 0xF5, b"\x00")
    assert bus.readfrom_mem(0x76, 0xF5, 1) == b"\x00"


def test_iir_filter_steps_towards_a_new_value():
    clock = Clock()
    world = {"temperature": 10.0, "pressure": 90000.0, "humidity": 20.0}
    sim = BME280Sim(lambda: dict(world), clock=clock)
    bus = SimI2C()
    bus.attach(0x76, sim)

    def forced() -> int:
        bus.writeto_mem(0x76, 0xF4, b"\x25")  # forced, T and P x1
        clock.t += 0.01
        d = bus.readfrom_mem(0x76, 0xF7, 3)
        return (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)

    bus.writeto_mem(0x76, 0xF5, bytes((0b010 << 2,)))  # filter coefficient 4
    before = forced()
    t_fine = compensate_t(raw_for(10.0, 90000.0, 20.0)[0], PUBLISHED_CAL)[1]
    assert compensate_p(before, t_fine, PUBLISHED_CAL) / 256 == pytest.approx(90000, abs=0.2)
    world["pressure"] = 100000.0
    target = raw_for(10.0, 100000.0, 20.0)[1]
    after = forced()
    assert after == round(before + (target - before) / 4)  # a quarter of the step
    for _ in range(60):
        after = forced()
    assert after == target


def test_soft_reset_restores_defaults():
    bus, sim, drv, clock = make()
    bus.writeto_mem(0x76, 0xE0, b"\x12")  # anything but 0xB6 is ignored
    assert bus.readfrom_mem(0x76, 0xF4, 1) == b"\x27"
    bus.writeto_mem(0x76, 0xE0, b"\xb6")
    assert bus.readfrom_mem(0x76, 0xF3, 1) == b"\x01"  # im_update: NVM being copied
    assert bus.readfrom_mem(0x76, 0xF4, 1) == b"\x00"
    clock.t += 0.002
    assert bus.readfrom_mem(0x76, 0xF3, 1) == b"\x00"
    with pytest.raises(NotReady):
        drv.read()
    clock.poll()
    assert drv.read()["temperature"] == pytest.approx(20.0, abs=0.01)  # reconfigured itself


def test_missing_or_wrong_chip_is_no_device():
    bus = SimI2C()
    with pytest.raises(NoDevice):
        BME280(bus).start()
    bus2, sim, drv, clock = make()
    bus2.unplug(0x76)
    with pytest.raises(NoDevice):
        drv.read()
    bus2.plug(0x76)
    clock.poll()
    assert drv.read()["humidity"] == pytest.approx(50.0, abs=0.01)


def test_out_of_range_and_stuck():
    _, sim, drv, clock = make()
    sim.out_of_range = True
    with pytest.raises(Implausible):
        drv.read()
    sim.out_of_range = False
    state = {"t": 10.0}
    sim.source = lambda: {"temperature": state["t"], "pressure": 1e5, "humidity": 50.0}
    clock.poll()
    first = drv.read()["temperature"]
    sim.stuck = True
    state["t"] = 30.0
    clock.poll()
    assert drv.read()["temperature"] == first


@pytest.mark.parametrize(
    "t, p, h", [(-40.0, 30000.0, 0.0), (85.0, 110000.0, 100.0), (-40.0, 110000.0, 100.0)]
)
def test_an_honest_reading_at_the_edge_of_the_range_is_plausible(t, p, h):
    """What the chip reports at its specified edges (-40..85 degC, 300..1100 hPa, 0..100 %RH)
    passes the descriptor, with one count to spare: the ADC count nearest an edge can land
    on either side, and at oversampling x1 (16 bit) a pressure count is about 2.6 Pa."""
    fields = load_sensor("bme280").fields
    adc_t, adc_p, adc_h = raw_for(t, p, h)
    temp, t_fine = compensate_t(adc_t, PUBLISHED_CAL)
    for adc in (adc_p - 16, adc_p, adc_p + 16):  # the next 16-bit counts either side
        assert fields["pressure"].plausible(compensate_p(adc, t_fine, PUBLISHED_CAL) / 256)
    assert fields["temperature"].plausible(temp / 100)
    assert fields["temperature"].plausible(compensate_t(adc_t - 16, PUBLISHED_CAL)[0] / 100)
    assert fields["temperature"].plausible(compensate_t(adc_t + 16, PUBLISHED_CAL)[0] / 100)
    assert fields["humidity"].plausible(compensate_h(adc_h, t_fine, PUBLISHED_CAL) / 1024)

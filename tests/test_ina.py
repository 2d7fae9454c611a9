"""INA219 / INA226 drivers against the register-level simulators and the reference vectors."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.descriptors import load_sensor
from edge.drivers.ina219 import INA219
from edge.drivers.ina226 import INA226
from edge.errors import Implausible, NoDevice, NotReady
from host_sim.devices import ina219 as sim219
from host_sim.devices import ina226 as sim226
from host_sim.i2c import SimI2C


class Clock:
    def __init__(self):
        self.t = 10.0

    def __call__(self):
        return self.t


class Regs:
    """Fixed 16-bit registers, for decoding vectors without the simulators."""

    def __init__(self, regs):
        self.regs = regs
        self.writes = []

    def readfrom_mem_into(self, addr, reg, buf, addrsize=8):
        buf[:] = self.regs[reg].to_bytes(2, "big")

    def writeto_mem(self, addr, reg, buf, addrsize=8):
        self.writes.append((reg, bytes(buf)))


def rig(kind, current=0.5, voltage=12.0, shunt_ohms=0.1, **opts):
    clock = Clock()
    world = {"current": current, "voltage": voltage}
    sim_cls, drv_cls = (sim219.INA219Sim, INA219) if kind == 219 else (sim226.INA226Sim, INA226)
    sim = sim_cls(lambda: dict(world), shunt_ohms=shunt_ohms, clock=clock)
    bus = SimI2C()
    bus.attach(0x40, sim)
    drv = drv_cls(bus, 0x40, shunt_ohms=shunt_ohms, **opts)
    return clock, world, sim, bus, drv


def round_trip(kind, current, voltage, *, shunt_a, bus_v, power_lsbs):
    """One reading against the simulator, within half an ADC step (shunt LSB in amps
    through 0.1 ohm, bus LSB in volts) plus the chip's integer truncations."""
    clock, _, sim, bus, drv = rig(kind, current=current, voltage=voltage)
    drv.start()
    clock.t += 0.01
    r = drv.read()
    lsb = drv.current_lsb
    assert r["current"] == pytest.approx(current, abs=shunt_a / 2 + 1.01 * lsb)
    assert r["voltage"] == pytest.approx(voltage, abs=bus_v / 2 + 1e-9)
    assert r["power"] == pytest.approx(
        abs(current) * voltage,
        abs=power_lsbs * lsb + bus_v / 2 * abs(current) + 2.1 * lsb * voltage,
    )


# --- INA219 -----------------------------------------------------------------------------


def test_ina219_vectors_sim():
    assert sim219.shunt_raw(0.5, 0.1) == 0x1388
    assert sim219.bus_raw(12.0) << 3 | 2 == 0x5DC2
    clock, _, sim, bus, drv = rig(219, max_current=3.2768)
    assert drv.cal == 4096
    drv.start()
    clock.t += 0.01
    bus.writeto(0x40, b"\x02")
    assert bus.readfrom(0x40, 2) == b"\x5d\xc2"
    bus.writeto(0x40, b"\x01")
    assert bus.readfrom(0x40, 2) == b"\x13\x88"
    bus.writeto(0x40, b"\x04")
    assert bus.readfrom(0x40, 2) == (5000).to_bytes(2, "big")  # shunt x 4096 / 4096
    bus.writeto(0x40, b"\x03")
    assert bus.readfrom(0x40, 2) == (3000).to_bytes(2, "big")  # 5000 x 3000 / 5000


def test_ina219_vector_driver():
    regs = Regs({0x01: 0x1388, 0x02: 0x5DC2, 0x03: 3000, 0x04: 5000})
    r = INA219(regs, max_current=3.2768).read()
    assert regs.writes == [(0x05, b"\x10\x00")]  # CAL 4096 rewritten before reading
    assert r["current"] == pytest.approx(0.5)
    assert r["voltage"] == pytest.approx(12.0)
    assert r["power"] == pytest.approx(6.0)


def test_ina219_power_on_defaults_and_reset():
    clock, _, sim, bus, drv = rig(219)
    assert bus.readfrom_mem(0x40, 0x00, 2) == b"\x39\x9f"
    assert bus.readfrom_mem(0x40, 0x05, 2) == b"\x00\x00"
    bus.writeto_mem(0x40, 0x05, b"\x12\x35")
    assert bus.readfrom_mem(0x40, 0x05, 2) == b"\x12\x34"  # bit 0 is void
    bus.writeto_mem(0x40, 0x00, b"\x01\x07")
    bus.writeto_mem(0x40, 0x00, b"\x80\x00")  # reset bit
    assert bus.readfrom_mem(0x40, 0x00, 2) == b"\x39\x9f"
    assert bus.readfrom_mem(0x40, 0x05, 2) == b"\x00\x00"


def test_ina219_cnvr_cleared_by_power_read():
    clock, _, sim, bus, drv = rig(219)
    drv.start()
    clock.t += 0.01
    assert drv.read()["current"] == pytest.approx(0.5, abs=2e-4)
    with pytest.raises(NotReady):
        drv.read()  # same instant: no conversion since the power register was read
    clock.t += 0.002
    assert drv.read()["voltage"] == pytest.approx(12.0, abs=0.002)


def test_ina219_brown_out_cal_rewritten():
    clock, world, sim, bus, drv = rig(219)
    drv.start()
    clock.t += 0.01
    drv.read()
    sim.brown_out()
    clock.t += 0.01
    assert bus.readfrom_mem(0x40, 0x04, 2) == b"\x00\x00"  # CAL 0: current reads 0
    with pytest.raises(NotReady):
        drv.read()  # CAL rewritten now, registers still from CAL 0
    clock.t += 0.01
    assert drv.read()["current"] == pytest.approx(0.5, abs=2e-4)


def test_ina219_overflow_and_saturation_are_implausible():
    clock, world, sim, bus, drv = rig(219, current=5.0)  # 500 mV > 320 mV range
    drv.start()
    clock.t += 0.01
    with pytest.raises(Implausible):
        drv.read()
    clock, world, sim, bus, drv = rig(219, current=3.0, max_current=1.0)  # current reg overflows
    drv.start()
    clock.t += 0.01
    with pytest.raises(Implausible):
        drv.read()


def test_ina219_triggered_mode_converts_once():
    clock, _, sim, bus, _ = rig(219)
    bus.writeto_mem(0x40, 0x00, b"\x39\x9b")  # mode 3: shunt and bus, triggered
    bus.writeto_mem(0x40, 0x05, b"\x10\x00")
    clock.t += 0.01
    assert bus.readfrom_mem(0x40, 0x02, 2)[1] & 2
    bus.readfrom_mem(0x40, 0x03, 2)
    clock.t += 0.01
    assert not bus.readfrom_mem(0x40, 0x02, 2)[1] & 2


def test_ina219_missing_is_no_device():
    with pytest.raises(NoDevice):
        INA219(SimI2C()).start()
    clock, _, sim, bus, drv = rig(219)
    drv.start()
    bus.unplug(0x40)
    with pytest.raises(NoDevice):
        drv.read()


@given(
    current=st.floats(min_value=-3.19, max_value=3.19),
    voltage=st.floats(min_value=0.0, max_value=26.0),
)
def test_ina219_round_trip(current, voltage):
    round_trip(219, current, voltage, shunt_a=1e-4, bus_v=0.004, power_lsbs=20)


# --- INA226 -----------------------------------------------------------------------------


def test_ina226_vectors_sim():
    clock, _, sim, bus, drv = rig(
        226, current=10.0, voltage=11.98, shunt_ohms=0.002, max_current=32.768
    )
    assert drv.cal == 0x0A00
    drv.start()
    clock.t += 0.01
    expected = {0x01: 0x1F40, 0x02: 0x2570, 0x04: 0x2710, 0x03: 0x12B8, 0x05: 0x0A00}
    for reg, value in expected.items():
        assert bus.readfrom_mem(0x40, reg, 2) == value.to_bytes(2, "big"), hex(reg)


def test_ina226_vector_driver():
    regs = Regs(
        {
            0xFE: 0x5449,
            0xFF: 0x2260,
            0x06: 0x0008,
            0x01: 0x1F40,
            0x02: 0x2570,
            0x04: 0x2710,
            0x03: 0x12B8,
        }
    )
    drv = INA226(regs, shunt_ohms=0.002, max_current=32.768)
    drv.start()
    r = drv.read()
    assert regs.writes[-1] == (0x05, b"\x0a\x00")
    assert r["current"] == pytest.approx(10.0)
    assert r["voltage"] == pytest.approx(11.98)
    assert r["power"] == pytest.approx(119.8)


def test_ina226_power_on_defaults_and_ids():
    clock, _, sim, bus, drv = rig(226)
    assert bus.readfrom_mem(0x40, 0x00, 2) == b"\x41\x27"
    assert bus.readfrom_mem(0x40, 0x05, 2) == b"\x00\x00"
    assert bus.readfrom_mem(0x40, 0xFE, 2) == b"\x54\x49"
    assert bus.readfrom_mem(0x40, 0xFF, 2) == b"\x22\x60"
    bus.writeto_mem(0x40, 0x05, b"\xff\xff")
    assert bus.readfrom_mem(0x40, 0x05, 2) == b"\x7f\xff"  # bit 15 reserved


def test_ina226_reserved_config_bits_and_alert_functions():
    clock, world, sim, bus, drv = rig(226, current=0.3, voltage=12.0)
    bus.writeto_mem(0x40, 0x00, b"\x3f\xff")  # reserved bits 14..12 ignored, 14 reads 1
    assert bus.readfrom_mem(0x40, 0x00, 2) == b"\x4f\xff"
    bus.writeto_mem(0x40, 0x00, b"\x41\x27")
    bus.writeto_mem(0x40, 0x07, (9000).to_bytes(2, "big"))  # bus over 11.25 V
    bus.writeto_mem(0x40, 0x06, b"\x20\x00")  # BOL, transparent
    clock.t += 0.003
    assert bus.readfrom_mem(0x40, 0x06, 2) == b"\x20\x18"  # AFF and CVRF
    assert sim.alert
    assert bus.readfrom_mem(0x40, 0x06, 2) == b"\x20\x10"  # CVRF cleared, AFF stays
    world["voltage"] = 11.0
    clock.t += 0.003
    assert bus.readfrom_mem(0x40, 0x06, 2) == b"\x20\x08"  # transparent: AFF follows
    assert not sim.alert
    bus.writeto_mem(0x40, 0x06, b"\x40\x01")  # SUL (shunt under 0 V), latched
    bus.writeto_mem(0x40, 0x07, b"\x00\x00")
    world["current"] = -0.1
    clock.t += 0.003
    assert bus.readfrom_mem(0x40, 0x06, 2) == b"\x40\x19"
    world["current"] = 0.1
    clock.t += 0.003
    assert bus.readfrom_mem(0x40, 0x06, 2) == b"\x40\x09"  # latched: cleared by the read
    bus.writeto_mem(0x40, 0x06, b"\x04\x00")  # CNVR: the pin follows conversion ready
    clock.t += 0.003
    assert sim.alert
    bus.readfrom_mem(0x40, 0x06, 2)
    assert not sim.alert


def test_ina226_wrong_ids_and_missing_are_no_device():
    with pytest.raises(NoDevice):
        INA226(SimI2C()).start()
    with pytest.raises(NoDevice):
        INA226(Regs({0xFE: 0x5449, 0xFF: 0x2270})).start()
    clock, _, sim, bus, drv = rig(226, current=0.3)
    drv.start()
    bus.unplug(0x40)
    with pytest.raises(NoDevice):
        drv.read()


def test_ina226_cvrf_cleared_by_reading_mask_enable():
    clock, _, sim, bus, drv = rig(226, current=0.3)
    drv.start()
    clock.t += 0.01
    assert drv.read()["current"] == pytest.approx(0.3, abs=5e-5)
    with pytest.raises(NotReady):
        drv.read()
    clock.t += 0.0023
    assert drv.read()["current"] == pytest.approx(0.3, abs=5e-5)


def test_ina226_brown_out_cal_rewritten():
    clock, world, sim, bus, drv = rig(226, current=0.3)
    drv.start()
    clock.t += 0.01
    drv.read()
    sim.brown_out()
    clock.t += 0.01
    with pytest.raises(NotReady):
        drv.read()
    clock.t += 0.01
    assert drv.read()["power"] == pytest.approx(0.3 * 12.0, abs=2e-3)


def test_ina226_saturation_and_overflow_are_implausible():
    clock, world, sim, bus, drv = rig(226, current=1.0)  # 100 mV > 81.92 mV
    drv.start()
    clock.t += 0.01
    with pytest.raises(Implausible):
        drv.read()
    clock, world, sim, bus, drv = rig(226, current=0.5, max_current=0.2)
    drv.start()
    clock.t += 0.01
    with pytest.raises(Implausible):
        drv.read()


@given(
    current=st.floats(min_value=-0.8191, max_value=0.8191),
    voltage=st.floats(min_value=0.0, max_value=36.0),
)
def test_ina226_round_trip(current, voltage):
    round_trip(226, current, voltage, shunt_a=2.5e-5, bus_v=0.00125, power_lsbs=25)


# --- what both share (edge.drivers.ina219.INA2xx) ------------------------------------------


@pytest.mark.parametrize(
    "cls, shunt_ohms, max_current",
    [
        (INA219, 0.1, 0.01),  # CAL 0x147AE1: once silently cut to 16 bits, now refused
        (INA219, 0.1, -1.0),
        (INA219, 0.1, 9000.0),  # CAL 1, and bit 0 is void
        (INA226, 0.1, 0.01),  # CAL 0x28F5C > 0x7FFF
        (INA226, 0.1, 1e6),  # CAL 0
    ],
)
def test_a_calibration_the_chip_cannot_hold_is_refused(cls, shunt_ohms, max_current):
    with pytest.raises(ValueError, match=cls.NAME):
        cls(Regs({}), shunt_ohms=shunt_ohms, max_current=max_current)


def test_largest_calibrations_are_kept():
    assert (
        INA219(Regs({}), shunt_ohms=0.1, max_current=0.04096 * 32768 / 0.1 / 0xFFFF).cal == 0xFFFE
    )
    assert (
        INA226(Regs({}), shunt_ohms=0.1, max_current=0.00512 * 32768 / 0.1 / 0x7FFF).cal == 0x7FFF
    )


@pytest.mark.parametrize(
    "kind, current, voltage",
    [
        (219, 3.1999, 26.0),  # the last shunt count below 320 mV, the bus's rated maximum
        (219, -3.1999, 0.0),
        (226, 0.81915, 36.0),  # the last shunt count below 81.92 mV, the rated maximum
        (226, -0.81915, 0.0),
    ],
)
def test_an_honest_reading_at_the_edge_of_the_range_is_plausible(kind, current, voltage):
    fields = load_sensor(f"ina{kind}").fields
    clock, _, sim, bus, drv = rig(kind, current=current, voltage=voltage)
    drv.start()
    clock.t += 0.01
    r = drv.read()
    for name, value in r.items():
        assert fields[name].plausible(value), (name, value)

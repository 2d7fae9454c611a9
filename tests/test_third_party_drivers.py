"""Independent, widely used drivers read our simulators and agree with our drivers.

A simulator that only our own drivers have read may share their misreading of the
datasheet. So each simulated I2C chip is read here by a third-party driver written from
the same datasheet, Adafruit's CircuitPython libraries (installed from PyPI, run on
CPython through tests/third_party_i2c.py), at several physical values including the
edges of the chip's range, and the two drivers must agree within the chip's resolution:
- SHT31: adafruit_sht31d, every mode it offers (single shot with and without clock
  stretching at three repeatabilities, periodic at five rates, ART, heater, status,
  serial number). Its constructor starts with break and soft reset behind an empty-write
  probe: the simulator NACKed the first two before, so the driver could not even start.
- BME280: adafruit_bme280 (forced mode with its status polling, normal mode, the IIR
  filter, a skipped channel), against our normal-mode integer compensation.
- LIS3DH: adafruit_lis3dh (its BOOT, 400 Hz, high resolution, each full scale).
- INA219: adafruit_ina219 on the same chip as our driver, its calibrations and modes.
- INA226: Adafruit has no INA226 driver; its INA260 driver is used instead. TI's INA260
  is an INA226 with a 2 mOhm shunt inside: the same register map, except that register
  01 holds the current (1.25 mA/LSB), which is the INA226's shunt voltage (2.5 uV/LSB)
  through 2 mOhm, and that the die id reads 0x227. So on an INA226 with a 2 mOhm shunt,
  told the INA226's die id, it reads current, bus voltage, power (with CAL 6400, which
  our driver writes: 0.4 mA and 10 mW per LSB, the INA260's), conversion ready, its
  modes and the alert function; the alert flag is new in the simulator.
"""

from __future__ import annotations

import math

import adafruit_ina219
import adafruit_ina260
import adafruit_lis3dh
import adafruit_sht31d
import pytest
from adafruit_bme280 import advanced as bme280_advanced
from adafruit_bme280 import basic as bme280_basic

from edge.drivers.bme280 import BME280
from edge.drivers.ina219 import INA219
from edge.drivers.ina226 import INA226
from edge.drivers.lis3dh import LIS3DH
from edge.drivers.sht31 import SHT31
from edge.errors import Implausible
from host_sim.devices.bme280 import BME280Sim, measure_time_s
from host_sim.devices.ina219 import INA219Sim
from host_sim.devices.ina226 import INA226Sim
from host_sim.devices.lis3dh import LIS3DHSim
from host_sim.devices.sht31 import SHT31Sim
from host_sim.i2c import SimI2C
from tests.third_party_i2c import BusioI2C, SimClock, use_sim_time


@pytest.fixture
def clock(monkeypatch) -> SimClock:
    """One simulated clock for the simulators, the bus and every Adafruit module."""
    c = SimClock()
    use_sim_time(
        monkeypatch,
        c,
        adafruit_sht31d,
        bme280_basic,
        adafruit_lis3dh,
        adafruit_ina219,
        adafruit_ina260,
    )
    return c


def on_bus(sim, address: int, clock: SimClock) -> tuple[SimI2C, BusioI2C]:
    bus = SimI2C()
    bus.attach(address, sim)
    return bus, BusioI2C(bus, clock)


# --- SHT31 ---------------------------------------------------------------------------------

SHT_T_LSB, SHT_RH_LSB = 175 / 65535, 100 / 65535


def sht31_pair(clock: SimClock, world: dict):
    """Ours and Adafruit's, each on its own simulated SHT31 in the same world."""
    ours_sim = SHT31Sim(lambda: dict(world), clock=clock)
    ours_bus, _ = on_bus(ours_sim, 0x44, clock)
    ours = SHT31(
        ours_bus,
        0x44,
        clock=lambda: int(clock() * 1000),
        sleep_ms=lambda ms: clock.advance(ms / 1000),
    )
    ours.start()
    ada_sim = SHT31Sim(lambda: dict(world), clock=clock)
    _, busio = on_bus(ada_sim, 0x44, clock)
    ada = adafruit_sht31d.SHT31D(busio, 0x44)
    return ours, ada, ada_sim


@pytest.mark.parametrize(
    "temperature, humidity",
    [(-40.0, 0.0), (-12.5, 100.0), (0.0, 45.0), (23.0, 45.0), (60.0, 5.0), (125.0, 100.0)],
)
def test_sht31_adafruit_agrees_with_ours_across_the_range(clock, temperature, humidity):
    world = {"temperature": temperature, "humidity": humidity}
    ours, ada, _ = sht31_pair(clock, world)
    clock.advance(1.0)
    mine = ours.read()  # pipelined: the measurement start() triggered
    theirs_t, theirs_rh = ada.temperature, ada.relative_humidity
    assert mine["temperature"] == pytest.approx(theirs_t, abs=SHT_T_LSB)
    assert mine["humidity"] == pytest.approx(theirs_rh, abs=SHT_RH_LSB)
    assert theirs_t == pytest.approx(temperature, abs=SHT_T_LSB / 2 + 1e-9)
    assert theirs_rh == pytest.approx(humidity, abs=SHT_RH_LSB / 2 + 1e-9)


@pytest.mark.parametrize("temperature", [-45.0, 130.0])
def test_sht31_adc_span_beyond_the_specified_range(clock, temperature):
    """The ADC spans -45..130 degC; the chip is specified for -40..125. Adafruit reports
    the raw edge, ours refuses it as implausible (its specified-range check)."""
    world = {"temperature": temperature, "humidity": 50.0}
    ours, ada, _ = sht31_pair(clock, world)
    clock.advance(1.0)
    with pytest.raises(Implausible):
        ours.read()
    assert ada.temperature == pytest.approx(temperature, abs=1e-9)


def test_sht31_adafruit_constructor_break_reset_and_status(clock):
    """Probe (empty write), break 30 93, soft reset 30 A2: the simulator NACKed the probe
    and the break before this, so Adafruit's driver failed in its constructor."""
    sim = SHT31Sim(lambda: {"temperature": 20.0, "humidity": 50.0}, clock=clock)
    _, busio = on_bus(sim, 0x44, clock)
    ada = adafruit_sht31d.SHT31D(busio, 0x44)
    assert ada.status == 0x8010  # alert pending and reset detected, as after a reset
    assert ada.serial_number == sim.serial_number
    ada.heater = True
    assert ada.heater and sim.heater
    ada.heater = False
    assert not ada.heater and not sim.heater


@pytest.mark.parametrize("stretching", [False, True])
@pytest.mark.parametrize("repeatability", ["High", "Medium", "Low"])
def test_sht31_adafruit_single_shot_modes(clock, repeatability, stretching):
    world = {"temperature": 18.25, "humidity": 61.5}
    ours, ada, sim = sht31_pair(clock, world)
    ada.repeatability = repeatability
    ada.clock_stretching = stretching
    clock.advance(1.0)
    mine = ours.read()
    assert ada.temperature == pytest.approx(mine["temperature"], abs=SHT_T_LSB)
    assert ada.relative_humidity == pytest.approx(mine["humidity"], abs=SHT_RH_LSB)
    assert (sim.stretched_s > 0) == stretching  # it waited 1 ms, then the chip held SCL


@pytest.mark.parametrize("frequency", [0.5, 1, 2, 4, 10, "ART"])
def test_sht31_adafruit_periodic_mode_and_art(clock, frequency):
    world = {"temperature": 5.0, "humidity": 80.0}
    ours, ada, sim = sht31_pair(clock, world)
    if frequency == "ART":
        ada.art = True
        frequency = 4
    else:
        ada.frequency = frequency
    ada.mode = adafruit_sht31d.MODE_PERIODIC
    assert sim.periodic
    clock.advance(1 / frequency + 0.0155)
    clock.advance(1.0)
    mine = ours.read()
    assert ada.temperature == pytest.approx(mine["temperature"], abs=SHT_T_LSB)
    world["temperature"] = 30.0
    clock.advance(1 / frequency + 0.0155)
    assert ada.temperature == pytest.approx(30.0, abs=SHT_T_LSB)
    ada.mode = adafruit_sht31d.MODE_SINGLE  # break
    assert not sim.periodic
    clock.advance(0.001)
    assert ada.relative_humidity == pytest.approx(80.0, abs=SHT_RH_LSB)


# --- BME280 --------------------------------------------------------------------------------

# The datasheet's resolution: 0.01 degC (output), 0.18 Pa (20 bit), 0.008 %RH.
BME_T, BME_P, BME_H = 0.01, 0.18, 0.008


def bme280_pair(clock: SimClock, world: dict):
    ours_sim = BME280Sim(lambda: dict(world), clock=clock)
    ours_bus, _ = on_bus(ours_sim, 0x76, clock)
    ours = BME280(ours_bus, 0x76)
    ours.start()
    ada_sim = BME280Sim(lambda: dict(world), clock=clock)
    _, busio = on_bus(ada_sim, 0x76, clock)
    ada = bme280_basic.Adafruit_BME280_I2C(busio, 0x76)
    return ours, ada, ada_sim


@pytest.mark.parametrize(
    "temperature, pressure, humidity",
    [
        (24.79, 100662.0, 68.67),  # the reference vector
        (-40.0, 30001.0, 0.0),
        (85.0, 109999.0, 100.0),
        (-5.0, 80000.0, 95.0),
        (40.0, 104000.0, 12.0),
        (0.0, 101325.0, 50.0),
        (-40.0, 30000.0, 0.0),  # the edges: our driver keeps the count nearest them
        (85.0, 110000.0, 100.0),
    ],
)
def test_bme280_adafruit_agrees_with_ours_across_the_range(clock, temperature, pressure, humidity):
    world = {"temperature": temperature, "pressure": pressure, "humidity": humidity}
    ours, ada, _ = bme280_pair(clock, world)
    clock.advance(1.0)
    theirs = (ada.temperature, ada.pressure * 100, ada.humidity)  # forced mode, each
    assert theirs[0] == pytest.approx(temperature, abs=BME_T)
    assert theirs[1] == pytest.approx(pressure, abs=BME_P)
    assert theirs[2] == pytest.approx(humidity, abs=BME_H + 0.002)  # bisection: 1 count
    mine = ours.read()
    assert mine["temperature"] == pytest.approx(theirs[0], abs=BME_T)
    assert mine["pressure"] == pytest.approx(theirs[1], abs=BME_P)
    assert mine["humidity"] == pytest.approx(theirs[2], abs=BME_H)


def test_bme280_adafruit_forced_mode_waits_on_the_measuring_bit(clock):
    world = {"temperature": 12.0, "pressure": 95000.0, "humidity": 40.0}
    _, ada, sim = bme280_pair(clock, world)
    assert sim.regs[0xF4] & 0b11 == 0  # its constructor: soft reset, then sleep
    t0 = clock()
    assert ada.temperature == pytest.approx(12.0, abs=BME_T)
    # forced, T x1, P x16, H x1: 1.25 + 2.3 + 2.3 * 16 + 0.575 + 2.3 + 0.575 = 43.8 ms max
    assert 0.0438 <= clock() - t0 < 0.0438 + 0.004  # polled the status every 2 ms
    assert sim.regs[0xF4] & 0b11 == 0  # back to sleep by itself


def test_bme280_adafruit_normal_mode_and_iir_filter(clock):
    world = {"temperature": 12.0, "pressure": 95000.0, "humidity": 40.0}
    sim = BME280Sim(lambda: dict(world), clock=clock)
    _, busio = on_bus(sim, 0x76, clock)
    ada = bme280_advanced.Adafruit_BME280_I2C(busio, 0x76)
    ada.overscan_pressure = bme280_advanced.OVERSCAN_X1
    ada.iir_filter = bme280_advanced.IIR_FILTER_X4
    ada.mode = bme280_advanced.MODE_NORMAL
    t_normal = clock()
    assert sim.regs[0xF5] == 0b010 << 2  # config written while asleep, as the datasheet asks
    t_meas = measure_time_s(sim.regs[0xF4], sim.regs[0xF2])  # T, P, H x1: 9.3 ms
    period = t_meas + 0.0005  # t_sb 0.5 ms
    clock.advance(t_normal + t_meas + 0.0001 - clock())  # the first result
    assert ada.pressure * 100 == pytest.approx(95000.0, abs=BME_P)
    world["pressure"] = 96000.0
    clock.advance(t_normal + t_meas + period + 0.0001 - clock())  # one more
    step = ada.pressure * 100 - 95000.0
    assert step == pytest.approx(1000.0 / 4, abs=1.0)  # a quarter of the way per sample
    clock.advance(1.0)
    assert ada.pressure * 100 == pytest.approx(96000.0, abs=BME_P)


def test_bme280_skipped_humidity_reads_0x8000_to_adafruit(clock):
    world = {"temperature": 12.0, "pressure": 95000.0, "humidity": 40.0}
    sim = BME280Sim(lambda: dict(world), clock=clock)
    _, busio = on_bus(sim, 0x76, clock)
    ada = bme280_advanced.Adafruit_BME280_I2C(busio, 0x76)
    ada.overscan_humidity = bme280_advanced.OVERSCAN_DISABLE
    ada.temperature  # noqa: B018 - a forced measurement
    assert ada._read_register(0xFD, 2) == b"\x80\x00"


# --- LIS3DH --------------------------------------------------------------------------------

G = adafruit_lis3dh.STANDARD_GRAVITY
# Adafruit divides the left-justified word by 2^15 / full scale, i.e. 1024 digits per g at
# 12 bits; the datasheet's typical sensitivity is 1 mg/digit (1000 per g). Tilt, a ratio,
# is the same either way; magnitudes differ by this factor.
ADAFRUIT_SCALE = 1000 / 1024


def lis3dh_pair(clock: SimClock, world: dict):
    ours_sim = LIS3DHSim(lambda: dict(world), clock=clock)
    ours_bus, _ = on_bus(ours_sim, 0x18, clock)
    ours = LIS3DH(ours_bus, 0x18, window=1)
    ours.start()
    ada_sim = LIS3DHSim(lambda: dict(world), clock=clock)
    _, busio = on_bus(ada_sim, 0x18, clock)
    ada = adafruit_lis3dh.LIS3DH_I2C(busio, address=0x18)
    return ours, ada, ada_sim


def tilt_of(x: float, y: float, z: float) -> float:
    return math.degrees(math.atan2(math.hypot(x, y), z))


@pytest.mark.parametrize(
    "tilt, azimuth",
    [
        (0.0, 0.0),
        (3.0, 40.0),
        (5.0, 0.0),
        (30.0, 200.0),
        (90.0, 90.0),
        (150.0, 315.0),
        (180.0, 0.0),
    ],
)
def test_lis3dh_adafruit_tilt_agrees_with_ours(clock, tilt, azimuth):
    world = {"tilt": tilt, "azimuth": azimuth, "sway": 0.0}
    ours, ada, _ = lis3dh_pair(clock, world)
    clock.advance(0.02)
    mine = ours.read()
    theirs = tilt_of(*ada.acceleration)
    assert mine["tilt"] == pytest.approx(theirs, abs=0.06)  # 1 mg in 1 g: 0.06 deg
    assert theirs == pytest.approx(tilt, abs=0.06)


def test_lis3dh_adafruit_constructor_configures_the_simulator(clock):
    _, ada, sim = lis3dh_pair(clock, {"tilt": 0.0})
    assert sim.regs[0x20] == 0x77  # 400 Hz, x, y, z on
    assert sim.regs[0x23] == 0x88  # block data update, high resolution, +-2 g
    assert sim.regs[0x1F] == 0x80  # ADC on
    assert sim.regs[0x24] == 0x08  # BOOT done and cleared, latched interrupt 1
    assert ada.data_rate == adafruit_lis3dh.DATARATE_400_HZ


@pytest.mark.parametrize(
    "fs, mg_per_digit",
    [
        (adafruit_lis3dh.RANGE_2_G, 1),
        (adafruit_lis3dh.RANGE_4_G, 2),
        (adafruit_lis3dh.RANGE_8_G, 4),
        (adafruit_lis3dh.RANGE_16_G, 12),
    ],
)
def test_lis3dh_adafruit_full_scales(clock, fs, mg_per_digit):
    _, ada, _ = lis3dh_pair(clock, {"tilt": 90.0, "azimuth": 0.0})  # x along gravity
    ada.range = fs
    clock.advance(0.01)
    x, y, z = ada.acceleration
    assert x / G == pytest.approx(ADAFRUIT_SCALE, abs=mg_per_digit / 1000)
    assert abs(y) / G <= mg_per_digit / 1000 and abs(z) / G <= mg_per_digit / 1000


@pytest.mark.parametrize("reg1, reg4, mg", [(0x77, 0x08, 1), (0x77, 0x00, 4), (0x7F, 0x00, 16)])
def test_lis3dh_left_justified_in_every_resolution(clock, reg1, reg4, mg):
    """High resolution (12 bit), normal (10 bit), low power (8 bit): a driver that reads
    the word as left-justified, as Adafruit's does, gets the same value in each."""
    _, ada, sim = lis3dh_pair(clock, {"tilt": 0.0})
    ada._write_register_byte(0x20, reg1)
    ada._write_register_byte(0x23, reg4)
    clock.advance(0.01)
    x, y, z = ada.acceleration
    assert z / G == pytest.approx(ADAFRUIT_SCALE, abs=mg / 1000)


# --- INA219 --------------------------------------------------------------------------------


def ina219_pair(clock: SimClock, world: dict):
    """Adafruit's and ours on one simulated chip (both use CAL 4096: 0.1 mA, 2 mW per LSB)."""
    sim = INA219Sim(lambda: dict(world), shunt_ohms=0.1, clock=clock)
    bus, busio = on_bus(sim, 0x40, clock)
    ada = adafruit_ina219.INA219(busio, 0x40)  # set_calibration_32V_2A: 0x399F, CAL 4096
    ours = INA219(bus, 0x40, shunt_ohms=0.1, max_current=3.2768)
    ours.start()
    return ours, ada, sim


@pytest.mark.parametrize("voltage", [0.0, 12.0, 26.0])
@pytest.mark.parametrize("current", [-3.1999, -1.5, 0.0, 0.0001, 0.5, 1.5, 3.1999])
def test_ina219_adafruit_agrees_with_ours(clock, current, voltage):
    world = {"current": current, "voltage": voltage}
    ours, ada, _ = ina219_pair(clock, world)
    clock.advance(0.01)
    mine = ours.read()
    assert ada.current / 1000 == pytest.approx(mine["current"], abs=1e-4)
    assert ada.bus_voltage == pytest.approx(mine["voltage"], abs=0.004)
    assert ada.power == pytest.approx(mine["power"], abs=0.002)
    assert ada.shunt_voltage == pytest.approx(current * 0.1, abs=1e-5)
    assert mine["current"] == pytest.approx(current, abs=1.5e-4)


def test_ina219_full_scale_shunt(clock):
    """320 mV across 0.1 ohm, the PGA's edge: Adafruit reads the clamp, ours refuses it
    (a saturated shunt cannot tell 3.2 A from 5 A)."""
    ours, ada, _ = ina219_pair(clock, {"current": 3.2, "voltage": 12.0})
    clock.advance(0.01)
    with pytest.raises(Implausible):
        ours.read()
    assert ada.shunt_voltage == pytest.approx(0.32)


@pytest.mark.parametrize(
    "calibrate, shunt_ohms, current, voltage",
    [
        ("set_calibration_32V_1A", 0.1, 1.2, 24.0),  # PGA /4, 160 mV
        ("set_calibration_16V_400mA", 0.1, 0.3, 12.0),  # PGA /1, 40 mV, 16 V range
        ("set_calibration_16V_5A", 0.02, 6.0, 14.0),  # PGA /4
    ],
)
def test_ina219_adafruit_calibrations_gains_and_bus_ranges(
    clock, calibrate, shunt_ohms, current, voltage
):
    sim = INA219Sim(lambda: {"current": current, "voltage": voltage}, shunt_ohms, clock=clock)
    _, busio = on_bus(sim, 0x40, clock)
    ada = adafruit_ina219.INA219(busio, 0x40)
    getattr(ada, calibrate)()
    clock.advance(0.01)
    assert ada.conversion_ready and not ada.overflow
    lsb_ma = 0.04096 / (4096 * shunt_ohms) * 1000
    assert ada.current == pytest.approx(current * 1000, abs=lsb_ma + 1e-2 / shunt_ohms)
    assert ada.bus_voltage == pytest.approx(voltage, abs=0.004)


def test_ina219_adafruit_triggered_mode_conversion_ready_and_reset(clock):
    world = {"current": 0.8, "voltage": 12.0}
    ours, ada, sim = ina219_pair(clock, world)
    ada.mode = adafruit_ina219.Mode.SANDBVOLT_TRIGGERED
    assert not ada.conversion_ready  # writing the mode cleared CNVR
    clock.advance(0.002)
    assert ada.conversion_ready
    assert ada.power == pytest.approx(9.6, abs=0.004)
    assert not ada.conversion_ready  # reading the power register cleared it
    ada.reset = 1
    assert sim.regs[0] == 0x399F and sim.regs[5] == 0  # power-on values, CAL 0


# --- INA226 (through Adafruit's INA260 driver) -----------------------------------------


class INA260OnINA226(adafruit_ina260.INA260):
    """Adafruit's INA260 driver told the INA226's die id, the one constant that differs."""

    INA260_ID = 0x226


def ina226_pair(clock: SimClock, world: dict):
    """Ours (CAL 6400 for 2 mOhm: 0.4 mA, 10 mW per LSB) and the INA260 driver, one chip."""
    sim = INA226Sim(lambda: dict(world), shunt_ohms=0.002, clock=clock)
    bus, busio = on_bus(sim, 0x40, clock)
    ours = INA226(bus, 0x40, shunt_ohms=0.002, max_current=13.1072)
    assert ours.cal == 6400
    ours.start()
    ada = INA260OnINA226(busio, 0x40)
    return ours, ada, sim


@pytest.mark.parametrize("voltage", [0.0, 11.98, 36.0])
@pytest.mark.parametrize("current", [-13.1, -2.5, 0.0, 0.4, 10.0, 13.1])
def test_ina226_adafruit_ina260_driver_agrees_with_ours(clock, current, voltage):
    world = {"current": current, "voltage": voltage}
    ours, ada, _ = ina226_pair(clock, world)
    clock.advance(0.01)
    mine = ours.read()
    # current: ours from the current register (0.4 mA), theirs from the shunt (1.25 mA)
    assert ada.current / 1000 == pytest.approx(mine["current"], abs=1.25e-3 + 0.4e-3)
    assert ada.voltage == pytest.approx(mine["voltage"], abs=1.25e-3)
    assert ada.power / 1000 == pytest.approx(mine["power"], abs=0.01)
    assert ada.current / 1000 == pytest.approx(current, abs=1.25e-3 / 2 + 1e-9)


@pytest.mark.parametrize("current, voltage", [(40.96, 12.0), (-40.96, 12.0), (5.0, 40.96)])
def test_ina226_edges_of_the_registers(clock, current, voltage):
    """Shunt +-81.92 mV (+-40.96 A through 2 mOhm) and bus 40.96 V, the registers' edges:
    the INA260 driver reads them; ours refuses (current register overflow at this CAL, or
    a bus above the 36 V the chip is specified for)."""
    ours, ada, _ = ina226_pair(clock, {"current": current, "voltage": voltage})
    clock.advance(0.01)
    with pytest.raises(Implausible):
        ours.read()
    assert ada.current / 1000 == pytest.approx(max(-40.96, min(40.95875, current)))
    assert ada.voltage == pytest.approx(min(voltage, 0x7FFF * 1.25e-3))


def test_ina226_adafruit_triggered_mode_averaging_and_conversion_ready(clock):
    world = {"current": 3.0, "voltage": 12.0}
    ours, ada, sim = ina226_pair(clock, world)
    ada.averaging_count = adafruit_ina260.AveragingCount.COUNT_16
    ada.current_conversion_time = adafruit_ina260.ConversionTime.TIME_1_1_ms
    ada.voltage_conversion_time = adafruit_ina260.ConversionTime.TIME_1_1_ms
    ada.mode = adafruit_ina260.Mode.TRIGGERED
    t0 = clock()
    assert ada.current == pytest.approx(3000.0, abs=1.25)  # it spins on CVRF, no sleep
    assert clock() - t0 >= 16 * 2 * 1.1e-3  # 16 averages of shunt and bus conversions
    world["voltage"] = 24.0
    ada.mode = adafruit_ina260.Mode.TRIGGERED  # one more conversion
    assert ada.voltage == pytest.approx(24.0, abs=1.25e-3)
    assert sim.regs[0] == 0x4000 | (0b010 << 9) | (0b100 << 6) | (0b100 << 3) | 0b011


def test_ina226_adafruit_alert_function_and_reset(clock):
    world = {"current": 12.0, "voltage": 12.0}
    ours, ada, sim = ina226_pair(clock, world)
    ada.alert_limit = int(10.0 / 1.25e-3)  # over 10 A, in shunt (INA260: current) LSBs
    ada.overcurrent_limit = True  # SOL
    clock.advance(0.01)
    assert ada.alert_function_flag and sim.alert
    world["current"] = 8.0
    clock.advance(0.01)
    assert not ada.alert_function_flag  # transparent mode: follows the conversions
    ada.reset_bit = True
    assert sim.regs[0] == 0x4127 and sim.regs[5] == 0 and sim.regs[6] == 0

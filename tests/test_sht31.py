"""SHT31 driver against the byte-exact simulator and the reference vectors."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.descriptors import load_sensor
from edge.drivers.sht31 import SHT31, crc8
from edge.errors import ChecksumError, Implausible, NoDevice, NotReady
from host_sim.devices.sht31 import MEASURE_S, SHT31Sim, encode
from host_sim.devices.sht31 import crc8 as sim_crc8
from host_sim.i2c import SimI2C

VECTOR = bytes.fromhex("637989733301")


class Clock:
    """Shared fake time: seconds for the simulator, ms ticks for the driver."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t

    def ms(self):
        return int(self.t * 1000)

    def sleep_ms(self, ms):
        self.t += ms / 1000


class Bus:
    """An I2C bus that answers ``readfrom`` with fixed bytes, for decoding vectors."""

    def __init__(self, data=b""):
        self.data = data
        self.written = []

    def writeto(self, addr, buf, stop=True):
        self.written.append(bytes(buf))
        return len(buf)

    def readfrom(self, addr, n, stop=True):
        return self.data[:n]

    def readfrom_into(self, addr, buf, stop=True):
        buf[:] = self.data[: len(buf)]


def rig(values=None, address=0x44):
    clock = Clock()
    state = {"temperature": 23.0, "humidity": 45.0} if values is None else values
    sim = SHT31Sim(lambda: dict(state), clock=clock)
    bus = SimI2C()
    bus.attach(address, sim)
    drv = SHT31(bus, address, clock=clock.ms, sleep_ms=clock.sleep_ms)
    return clock, state, sim, bus, drv


def test_crc_vector():
    assert crc8(b"\xbe\xef") == 0x92
    assert sim_crc8(b"\xbe\xef") == 0x92


def test_vector_sim_encodes():
    assert encode(23.0, 45.0) == VECTOR


def test_vector_driver_decodes():
    bus = Bus(VECTOR)
    drv = SHT31(bus, clock=lambda: 0)
    drv._t_trigger = 0  # as after start()
    r = drv.read()
    assert r["temperature"] == pytest.approx(23.0, abs=0.003)
    assert r["humidity"] == pytest.approx(45.0, abs=0.002)
    assert bus.written == [b"\x24\x00"]  # reading triggers the next measurement


def test_start_reset_status_and_pipelined_reads():
    clock, state, sim, bus, drv = rig()
    drv.start()
    assert drv.status == 0x8010  # power-on/reset default: alert pending, reset detected
    assert sim.measurements == 1
    clock.t += 0.02
    r = drv.read()
    assert r["temperature"] == pytest.approx(23.0, abs=0.003)
    state["temperature"] = -10.0
    clock.t += 1.0
    # sampled when the previous read() triggered it: one poll of latency
    assert drv.read()["temperature"] == pytest.approx(23.0, abs=0.003)
    clock.t += 1.0
    assert drv.read()["temperature"] == pytest.approx(-10.0, abs=0.003)
    assert sim.measurements == 4


def test_read_too_early_is_not_ready_then_recovers():
    clock, _, sim, bus, drv = rig()
    drv.start()
    clock.t += 0.005
    with pytest.raises(NotReady):
        drv.read()
    clock.t += MEASURE_S
    assert drv.read()["humidity"] == pytest.approx(45.0, abs=0.002)


def test_sim_nacks_without_trigger_and_while_measuring():
    clock = Clock()
    sim = SHT31Sim(lambda: {"temperature": 20.0, "humidity": 50.0}, clock=clock)
    with pytest.raises(OSError):
        sim.read(6)  # nothing triggered
    sim.write(b"\x24\x00")
    clock.t += 0.0154
    with pytest.raises(OSError):
        sim.read(6)
    clock.t += 0.0002
    assert sim.read(6) == encode(20.0, 50.0)
    with pytest.raises(OSError):
        sim.read(6)  # data is read once
    with pytest.raises(OSError):
        sim.write(b"\x12\x34")  # unknown command


def test_sim_status_reset_and_clear():
    clock = Clock()
    sim = SHT31Sim(lambda: {"temperature": 20.0, "humidity": 50.0}, clock=clock)
    sim.write(b"\xf3\x2d")
    assert sim.read(3) == b"\x80\x10" + bytes([crc8(b"\x80\x10")])
    sim.write(b"\x30\x41")
    sim.write(b"\xf3\x2d")
    assert sim.read(3)[:2] == b"\x00\x00"
    sim.write(b"\x30\xa2")
    with pytest.raises(OSError):
        sim.write(b"\xf3\x2d")  # busy for 1.5 ms after soft reset
    clock.t += 0.002
    sim.write(b"\xf3\x2d")
    assert sim.read(3)[:2] == b"\x80\x10"


def status(bus, address=0x44):
    bus.writeto(address, b"\xf3\x2d")
    word = bus.readfrom(address, 3)
    assert crc8(word[:2]) == word[2]
    return int.from_bytes(word[:2], "big")


def sim_rig(values=None):
    clock = Clock()
    world = {"temperature": 20.0, "humidity": 50.0} if values is None else values
    sim = SHT31Sim(lambda: dict(world), clock=clock)
    bus = SimI2C()
    bus.attach(0x44, sim)
    return clock, world, sim, bus


def test_sim_empty_write_acks_when_idle_and_nacks_while_measuring():
    clock, _, sim, bus = sim_rig()
    bus.writeto(0x44, b"")  # an address probe
    bus.writeto(0x44, b"\x24\x00")
    with pytest.raises(OSError):
        bus.writeto(0x44, b"")
    clock.t += MEASURE_S
    bus.writeto(0x44, b"")


@pytest.mark.parametrize(
    "cmd, wait_s",
    [(b"\x24\x00", 0.0155), (b"\x24\x0b", 0.0065), (b"\x24\x16", 0.0045)],
)
def test_sim_single_shot_repeatabilities_without_clock_stretching(cmd, wait_s):
    clock, _, sim, bus = sim_rig()
    bus.writeto(0x44, cmd)
    clock.t += wait_s - 0.0002
    with pytest.raises(OSError):
        bus.readfrom(0x44, 6)  # too early: NACK
    clock.t += 0.0002
    assert bus.readfrom(0x44, 6) == encode(20.0, 50.0)


@pytest.mark.parametrize("cmd", [b"\x2c\x06", b"\x2c\x0d", b"\x2c\x10"])
def test_sim_single_shot_with_clock_stretching_holds_the_read(cmd):
    clock, _, sim, bus = sim_rig()
    bus.writeto(0x44, cmd)
    clock.t += 0.001
    with pytest.raises(OSError):
        bus.writeto(0x44, b"\xf3\x2d")  # a command while measuring: NACK
    assert bus.readfrom(0x44, 6) == encode(20.0, 50.0)  # read header ACKed, SCL held
    assert sim.stretched_s > 0.002
    with pytest.raises(OSError):
        bus.readfrom(0x44, 6)


def test_sim_periodic_fetch_break_and_what_periodic_mode_refuses():
    clock, world, sim, bus = sim_rig()
    bus.writeto(0x44, b"\x21\x30")  # 1 measurement per second, high repeatability
    bus.writeto(0x44, b"\xe0\x00")
    with pytest.raises(OSError):
        bus.readfrom(0x44, 6)  # no measurement finished yet: the read header NACKs
    clock.t += MEASURE_S
    bus.writeto(0x44, b"\xe0\x00")
    assert bus.readfrom(0x44, 6) == encode(20.0, 50.0)
    bus.writeto(0x44, b"\xe0\x00")
    with pytest.raises(OSError):
        bus.readfrom(0x44, 6)  # fetched: the memory is clear until the next one
    world["temperature"] = 25.0
    clock.t += 1.0
    bus.writeto(0x44, b"\xe0\x00")
    assert bus.readfrom(0x44, 48)[:6] == encode(25.0, 50.0)  # then the bus reads 0xFF
    for refused in (b"\x24\x00", b"\x2c\x06", b"\x30\xa2", b"\x12\x34"):
        with pytest.raises(OSError):
            bus.writeto(0x44, refused)
        assert status(bus) & 0x0002  # command not processed
    assert not status(bus) & 0x0002  # the status read itself was
    bus.writeto(0x44, b"\x30\x93")  # break
    with pytest.raises(OSError):
        bus.writeto(0x44, b"")  # busy for 1 ms
    clock.t += 0.001
    assert not sim.periodic
    with pytest.raises(OSError):
        bus.writeto(0x44, b"\xe0\x00")  # fetch outside periodic mode
    bus.writeto(0x44, b"\x30\xa2")  # soft reset is fine when idle


@pytest.mark.parametrize(
    "cmd, mps",
    [(b"\x20\x32", 0.5), (b"\x22\x2b", 2), (b"\x23\x22", 4), (b"\x27\x37", 10)],
)
def test_sim_periodic_rates(cmd, mps):
    clock, world, sim, bus = sim_rig()
    bus.writeto(0x44, cmd)
    got = 0
    for _ in range(int(10 * mps) * 4):  # poll 4 times per measurement period for 10 s
        clock.t += 1 / mps / 4
        bus.writeto(0x44, b"\xe0\x00")
        try:
            bus.readfrom(0x44, 6)
            got += 1
        except OSError:
            pass
    assert got == int(10 * mps)


def test_sim_art_is_4_hz_and_general_call_reset_ends_it():
    clock, world, sim, bus = sim_rig()
    bus.writeto(0x44, b"\x30\x6d")  # heater on
    bus.writeto(0x44, b"\x2b\x32")  # ART
    clock.t += 0.25 + MEASURE_S
    bus.writeto(0x44, b"\xe0\x00")
    assert bus.readfrom(0x44, 6) == encode(20.0, 50.0)
    assert sim.measurements == 1
    with pytest.raises(OSError):
        bus.writeto(0x00, b"\x07")  # not a general call command the chip knows
    bus.writeto(0x00, b"\x06")  # general call reset: from any mode
    assert not sim.periodic
    clock.t += 0.0015
    assert status(bus) == 0x8010  # heater off again, reset detected


def test_sim_heater_status_bits_and_clear_status():
    clock, _, sim, bus = sim_rig()
    bus.writeto(0x44, b"\x30\x6d")
    assert status(bus) == 0x8010 | 0x2000
    bus.writeto(0x44, b"\x30\x41")  # clear status: alert and reset flags, not the heater
    assert status(bus) == 0x2000
    bus.writeto(0x44, b"\x30\x66")
    assert status(bus) == 0x0000


@pytest.mark.parametrize("cmd", [b"\x37\x80", b"\x36\x82"])
def test_sim_serial_number(cmd):
    _, _, sim, bus = sim_rig()
    bus.writeto(0x44, cmd)
    data = bus.readfrom(0x44, 6)
    assert crc8(data[0:2]) == data[2] and crc8(data[3:5]) == data[5]
    assert (int.from_bytes(data[0:2], "big") << 16 | int.from_bytes(data[3:5], "big")) == (
        sim.serial_number
    )


def test_missing_device_is_no_device():
    bus = SimI2C()
    clock = Clock()
    drv = SHT31(bus, 0x44, clock=clock.ms, sleep_ms=clock.sleep_ms)
    with pytest.raises(NoDevice):
        drv.start()
    with pytest.raises(NoDevice):
        drv.read()


def test_unplug_after_measuring_time_is_no_device_and_replug_recovers():
    clock, _, sim, bus, drv = rig()
    drv.start()
    clock.t += 1.0
    drv.read()
    bus.unplug(0x44)
    clock.t += 1.0
    with pytest.raises(NoDevice):
        drv.read()
    with pytest.raises(NoDevice):
        drv.read()
    bus.plug(0x44)
    clock.t += 1.0
    with pytest.raises(NotReady):
        drv.read()  # re-triggers: the chip answers again
    clock.t += 1.0
    assert drv.read()["temperature"] == pytest.approx(23.0, abs=0.003)


def test_power_cycled_chip_without_trigger_is_no_device_then_recovers():
    clock, _, sim, bus, drv = rig()
    drv.start()
    clock.t += 1.0
    sim._out = None  # a power cycle loses the pending measurement
    with pytest.raises(NoDevice):
        drv.read()
    clock.t += 1.0
    assert drv.read()["humidity"] == pytest.approx(45.0, abs=0.002)


def test_corrupt_crc_is_checksum_error_and_next_is_fine():
    clock, _, sim, bus, drv = rig()
    drv.start()
    clock.t += 1.0
    drv.read()
    sim.corrupt_crc_next = True  # applies to the measurement read() triggers next
    clock.t += 1.0
    drv.read()
    clock.t += 1.0
    with pytest.raises(ChecksumError):
        drv.read()
    clock.t += 1.0
    assert drv.read()["temperature"] == pytest.approx(23.0, abs=0.003)


def test_status_crc_error():
    bus = Bus(b"\x80\x10\x00")
    with pytest.raises(ChecksumError):
        SHT31(bus, clock=lambda: 0, sleep_ms=lambda ms: None).start()


def test_out_of_range_is_implausible():
    clock, _, sim, bus, drv = rig()
    sim.out_of_range = True
    drv.start()
    clock.t += 1.0
    with pytest.raises(Implausible):
        drv.read()


def test_stuck_repeats_old_value():
    clock, state, sim, bus, drv = rig()
    drv.start()
    sim.stuck = True
    state["temperature"] = 30.0
    clock.t += 1.0
    drv.read()
    clock.t += 1.0
    assert drv.read()["temperature"] == pytest.approx(23.0, abs=0.003)


@given(
    t=st.floats(min_value=-40.0, max_value=125.0),
    rh=st.floats(min_value=0.0, max_value=100.0),
)
def test_round_trip_whole_range(t, rh):
    clock, state, sim, bus, drv = rig({"temperature": t, "humidity": rh})
    drv.start()
    clock.t += 0.016
    r = drv.read()
    # resolution: 175/65535 degC and 100/65535 %RH, half an LSB after rounding
    assert r["temperature"] == pytest.approx(t, abs=175 / 65535 / 2 + 1e-9)
    assert r["humidity"] == pytest.approx(rh, abs=100 / 65535 / 2 + 1e-9)


def test_nack_of_the_first_trigger_is_no_device():
    """The trigger at the end of start() once let its OSError escape untyped."""

    class NacksMeasure(Bus):
        def writeto(self, addr, buf, stop=True):
            if bytes(buf) == b"\x24\x00":
                raise OSError(19, "ENODEV")
            return super().writeto(addr, buf, stop)

    drv = SHT31(NacksMeasure(b"\x80\x10" + bytes([crc8(b"\x80\x10")])), sleep_ms=lambda ms: None)
    with pytest.raises(NoDevice) as info:
        drv.start()
    assert info.value.errno == 19


@pytest.mark.parametrize("t, rh", [(-40.0, 0.0), (125.0, 100.0), (-40.0, 100.0), (125.0, 0.0)])
def test_an_honest_reading_at_the_edge_of_the_range_is_plausible(t, rh):
    """The count nearest -40 degC reads -40.0012 and the one nearest 125 degC 125.0012:
    the descriptor's range must let them through, not only our driver's check."""
    fields = load_sensor("sht31").fields
    clock, state, sim, bus, drv = rig({"temperature": t, "humidity": rh})
    drv.start()
    clock.t += 0.016
    r = drv.read()
    assert fields["temperature"].plausible(r["temperature"])
    assert fields["humidity"].plausible(r["humidity"])

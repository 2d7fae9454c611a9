"""Probe sniffer: the line protocol, recovery, and that its personal data stops in RAM:
errors never carry line contents, and the supervisor aggregates none of it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.descriptors import load_sensor
from edge.drivers.probe_sniffer import ProbeSniffer, nmea_checksum
from edge.errors import ChecksumError, FrameError
from edge.health import Health
from edge.sensors import SensorRunner
from edge.window import Window
from host_sim.devices.probe_sniffer import ProbeSnifferSim, crowd, line
from host_sim.serial_pty import LoopbackUART

MAC = bytes.fromhex("02a1b2c3d4e5")


def test_checksum_and_line_format():
    body = b"WPRB,1234,aa:bb:cc:dd:ee:ff,-60,6,43616665"
    assert line(1234, bytes.fromhex("aabbccddeeff"), -60, 6, b"Cafe") == (
        b"$" + body + b"*%02X\r\n" % nmea_checksum(body)
    )


@given(
    st.binary(min_size=6, max_size=6),
    st.integers(-100, 0),
    st.integers(1, 165),
    st.binary(max_size=32),
)
def test_round_trip(mac, rssi, channel, ssid):
    uart = LoopbackUART(ProbeSnifferSim(lambda: []))
    uart.inject(line(5, mac, rssi, channel, ssid))
    got = ProbeSniffer(uart).read()
    assert got == {"probes": [(mac, rssi, channel, ssid)], "probe_count": 1}


def test_bad_lines_are_reported_without_their_contents():
    uart = LoopbackUART(ProbeSnifferSim(lambda: []))
    drv = ProbeSniffer(uart)
    good = line(5, MAC, -50, 6, b"HomeNet")
    uart.inject(good[:-4] + (b"00" if good[-4:-2] != b"00" else b"11") + b"\r\n")
    with pytest.raises(ChecksumError) as e:
        drv.read()
    assert "a1:b2" not in str(e.value) and "HomeNet" not in str(e.value)
    uart.inject(b"$WPRB,garbage*ZZ\r\n")
    with pytest.raises(ChecksumError):
        drv.read()
    body = b"WPRB,1,not-a-mac,-50,6,00"
    uart.inject(b"$" + body + b"*%02X\r\n" % nmea_checksum(body))
    with pytest.raises(FrameError):
        drv.read()
    uart.inject(b"noise" + good[:10])
    assert drv.read() == {"probe_count": 0}  # bytes arrived, no complete line yet
    uart.inject(good[10:])
    assert drv.read()["probe_count"] == 1


def test_personal_fields_never_reach_the_window():
    people = crowd(40, seed=7)
    sim = ProbeSnifferSim(lambda: people, rate_per_device_s=1.0)
    uart = LoopbackUART(sim)
    health, window = Health(), Window(0, 3600)
    runner = SensorRunner(
        "sniffer", load_sensor("probe_sniffer"), lambda: ProbeSniffer(uart), health, lambda: window
    )
    for _ in range(20):
        uart.advance(1.0)
        runner.poll_once()
    assert window.series == {}  # personal and count fields are not aggregated here
    assert health.counters["gate_dropped_fields"] >= 20
    text = repr(health.counters) + repr(health.alarms) + repr(health.items())
    for mac, _ssid in people:
        assert mac.hex() not in text and ":".join(f"{b:02x}" for b in mac) not in text

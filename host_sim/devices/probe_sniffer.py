"""A simulated Wi-Fi/BLE probe sniffer: the people in the street carry phones that probe.

``source()`` gives the devices present as a list of (mac bytes, ssid bytes); each
probes a few times a minute. Global MACs (first octet bit 1 clear) stay the same;
randomised ones (bit 1 set) are what modern phones send. ``crowd(n, seed)`` makes a
plausible set. Fault knob: ``corrupt_next``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from edge.drivers.probe_sniffer import nmea_checksum


def line(ms: int, mac: bytes, rssi: int, channel: int, ssid: bytes) -> bytes:
    body = b"WPRB,%d,%s,%d,%d,%s" % (
        ms,
        ":".join(f"{b:02x}" for b in mac).encode(),
        rssi,
        channel,
        ssid.hex().encode(),
    )
    return b"$" + body + b"*%02X\r\n" % nmea_checksum(body)


def crowd(n: int, seed: int = 1) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        mac = bytearray(rng.randbytes(6))
        if i % 3:  # two in three phones randomise
            mac[0] = (mac[0] | 0x02) & 0xFE
        else:
            mac[0] &= 0xFC
        ssid = rng.choice([b"", b"HomeNet", b"Cafe-Guest", b"eduroam"])
        out.append((bytes(mac), ssid))
    return out


class ProbeSnifferSim:
    BAUD = 115200

    def __init__(
        self, source: Callable[[], list], rate_per_device_s: float = 0.1, seed: int = 1
    ) -> None:
        self.source = source
        self.rate = rate_per_device_s
        self.rng = random.Random(seed)
        self.corrupt_next = False
        self._last: float | None = None

    def receive(self, data: bytes) -> None:
        pass  # it only talks

    def poll(self, now: float) -> bytes:
        if self._last is None:
            self._last = now
            return b""
        dt, self._last = now - self._last, now
        out = bytearray()
        devices = self.source()
        if isinstance(devices, dict):  # {"devices": n}: a crowd of that size
            devices = crowd(int(devices.get("devices", 0)))
        for mac, ssid in devices:
            if self.rng.random() < min(1.0, self.rate * dt):
                ln = line(
                    int(now * 1000),
                    mac,
                    -self.rng.randint(40, 90),
                    self.rng.choice([1, 6, 11]),
                    ssid,
                )
                if self.corrupt_next:
                    self.corrupt_next = False
                    ln = ln[:-4] + b"00\r\n" if not ln.endswith(b"00\r\n") else ln[:-4] + b"11\r\n"
                out += ln
        return bytes(out)

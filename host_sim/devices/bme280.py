"""A byte-exact Bosch BME280 on the simulated I2C bus.

Register file with power-on defaults (chip id 0x60, everything else sleeping, data
registers 0x80000/0x8000 until the first measurement), read auto-increment, writes as
register/value pairs (the chip does not auto-increment on writes), soft reset (0xB6
to 0xE0), ctrl_hum latched by the next ctrl_meas write, forced mode (one measurement,
status bit 3 while measuring, then sleep) and normal mode (continuous).
Physical values from ``source()`` become raw ADC counts by bisection over the
driver's own integer compensation, temperature first since t_fine feeds P and H.
The default calibration is one published by a sensor vendor (Pimoroni's test
fixture), which reproduces the reference vector 24.79 °C / 1006.62 hPa / 68.67 %RH.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from edge.drivers.bme280 import compensate_h, compensate_p, compensate_t

PUBLISHED_CAL = (
    28009,
    25654,
    50,
    39145,
    -10750,
    3024,
    5667,
    -120,
    -7,
    15500,
    -14600,
    6000,
    75,
    376,
    0,
    286,
    50,
    30,
)


def calibration_bytes(cal: tuple) -> tuple[bytes, int, bytes]:
    """(0x88..0x9F, 0xA1, 0xE1..0xE7) as the chip stores them."""
    tp = struct.pack("<HhhHhhhhhhhh", *cal[:12])
    h1, h2, h3, h4, h5, h6 = cal[12:18]
    h = struct.pack("<hB", h2, h3) + struct.pack(
        "<bBbb", h4 >> 4, (h4 & 0x0F) | ((h5 & 0x0F) << 4), h5 >> 4, h6
    )
    return tp, h1, h


def _bisect(f: Callable[[int], int], target: float, lo: int, hi: int, increasing: bool) -> int:
    """The input in [lo, hi] whose output is closest to target, for a monotonic f."""
    a, b = lo, hi
    while b - a > 1:
        mid = (a + b) // 2
        if (f(mid) < target) == increasing:
            a = mid
        else:
            b = mid
    return min((a, b), key=lambda x: abs(f(x) - target))


def raw_for(
    temperature: float, pressure: float, humidity: float, cal: tuple = PUBLISHED_CAL
) -> tuple[int, int, int]:
    """ADC counts (adc_t, adc_p, adc_h) that the compensation maps to these values."""
    adc_t = _bisect(lambda x: compensate_t(x, cal)[0], temperature * 100, 0, (1 << 20) - 1, True)
    t_fine = compensate_t(adc_t, cal)[1]
    adc_p = _bisect(lambda x: compensate_p(x, t_fine, cal), pressure * 256, 0, (1 << 20) - 1, False)
    adc_h = _bisect(lambda x: compensate_h(x, t_fine, cal), humidity * 1024, 0, 0xFFFF, True)
    return adc_t, adc_p, adc_h


def data_bytes(adc_t: int, adc_p: int, adc_h: int) -> bytes:
    return bytes(
        (
            adc_p >> 12,
            (adc_p >> 4) & 0xFF,
            (adc_p & 0x0F) << 4,
            adc_t >> 12,
            (adc_t >> 4) & 0xFF,
            (adc_t & 0x0F) << 4,
            adc_h >> 8,
            adc_h & 0xFF,
        )
    )


class BME280Sim:
    def __init__(
        self,
        source: Callable[[], dict],
        cal: tuple = PUBLISHED_CAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.cal = cal
        self.clock = clock
        self.stuck = False
        self.out_of_range = False
        self.measurements = 0
        self._last: dict | None = None
        self.power_on()

    def power_on(self) -> None:
        """The state after power-up or soft reset (also what a brown-out leaves)."""
        self.regs = bytearray(256)
        self.regs[0xD0] = 0x60
        tp, h1, h = calibration_bytes(self.cal)
        self.regs[0x88 : 0x88 + 24] = tp
        self.regs[0xA1] = h1
        self.regs[0xE1 : 0xE1 + 7] = h
        self.regs[0xF7:0xFF] = bytes((0x80, 0, 0, 0x80, 0, 0, 0x80, 0))
        self.ptr = 0
        self._hum_latched = 0
        self._busy_until = 0.0

    # -- bus side --------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not data:
            return
        self.ptr = data[0]
        for i in range(0, len(data) - 1, 2):  # writes are (register, value) pairs
            reg = data[i]
            value = data[i + 1]
            self._write_reg(reg, value)

    def read(self, n: int) -> bytes:
        if self._mode() == 0b11 and self.ptr <= 0xFE and self.ptr + n > 0xF7:
            self._measure()  # normal mode: a fresh conversion is always waiting
        self.regs[0xF3] = 0x08 if self.clock() < self._busy_until else 0x00
        out = bytes(self.regs[(self.ptr + i) & 0xFF] for i in range(n))
        self.ptr = (self.ptr + n) & 0xFF
        return out

    def _write_reg(self, reg: int, value: int) -> None:
        if reg == 0xE0:
            if value == 0xB6:
                self.power_on()
            return
        if reg not in (0xF2, 0xF4, 0xF5):
            return  # read-only registers ignore writes
        self.regs[reg] = value
        if reg == 0xF4:
            self._hum_latched = self.regs[0xF2] & 0x07
            if value & 0b11 in (0b01, 0b10):  # forced: one measurement, then sleep
                self._measure()
                self.regs[0xF4] = value & 0xFC
                osr = [0, 1, 2, 4, 8, 16, 16, 16]
                t_ms = 1.25 + 2.3 * (
                    osr[value >> 5 & 7] + osr[value >> 2 & 7] + osr[self._hum_latched]
                )
                self._busy_until = self.clock() + t_ms / 1000

    def _mode(self) -> int:
        return self.regs[0xF4] & 0b11

    # -- physics ---------------------------------------------------------------
    def _measure(self) -> None:
        if self.stuck and self._last is not None:
            values = self._last
        else:
            values = self.source()
            self._last = values
        if self.out_of_range:
            adc_t, adc_p, adc_h = 0xFFFF0, 0x00010, 0xFFFF  # beyond any real street
        else:
            adc_t, adc_p, adc_h = raw_for(
                values["temperature"], values["pressure"], values["humidity"], self.cal
            )
        data = bytearray(data_bytes(adc_t, adc_p, adc_h))
        osrs_t = self.regs[0xF4] >> 5 & 7
        osrs_p = self.regs[0xF4] >> 2 & 7
        if osrs_p == 0:
            data[0:3] = b"\x80\x00\x00"
        if osrs_t == 0:
            data[3:6] = b"\x80\x00\x00"
        if self._hum_latched == 0:
            data[6:8] = b"\x80\x00"
        self.regs[0xF7:0xFF] = data
        self.measurements += 1

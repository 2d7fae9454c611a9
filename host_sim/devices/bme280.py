"""A byte-exact Bosch BME280 on the simulated I2C bus, to the datasheet's register map.

Modelled (datasheet BST-BME280-DS002, sections 3, 5 and appendix B):
- Register file with power-on values: chip id 0x60 at 0xD0, calibration NVM at 0x88..0xA1
  and 0xE1..0xE7, everything else 0 (sleep mode), data 0xF7..0xFE at 0x80000/0x8000.
- Reads auto-increment over the whole map, so one burst spans registers (0xF7..0xFE, or
  calibration and more); writes are (register, value) pairs (no auto-increment on writes).
  Read-only registers ignore writes; a burst read is consistent (data shadowing).
- Soft reset: 0xB6 to 0xE0 (other values ignored), as power-on; status im_update (bit 0)
  is set for the 2 ms the NVM copy takes.
- ctrl_hum (0xF2) takes effect at the next ctrl_meas (0xF4) write. ctrl_meas mode 00 sleep,
  01/10 forced (one measurement, then back to sleep: the mode bits read 00 again), 11 normal
  (a measurement every t_measure + t_standby, the first t_measure after the write).
- A measurement takes the datasheet's maximum t_measure = 1.25 + 2.3*osrs_t
  [+ 2.3*osrs_p + 0.575] [+ 2.3*osrs_h + 0.575] ms. Meanwhile status bit 3 (measuring) is
  set and the data registers keep the previous result; they change when it ends.
- config (0xF5): t_sb[7:5] (0.5, 62.5, 125, 250, 500, 1000, 10, 20 ms) and the IIR filter
  [4:2] (coefficient 2/4/8/16 on the temperature and pressure ADC values: x = x_prev +
  (x_new - x_prev)/c, from the first sample on). Writes in normal mode are ignored (the
  datasheet says they may be; drivers go to sleep first).
- A skipped channel (oversampling 0) reads 0x80000 (P, T) or 0x8000 (H).
Not modelled: ADC resolution per oversampling (16 bit at x1, 20 bit at x16 or with the
filter): every measurement has the full 20-bit resolution. Measurement noise.

Physical values from ``source()`` become raw ADC counts by bisection over the
driver's own integer compensation, temperature first since t_fine feeds P and H.
The default calibration is one published by a sensor vendor (Pimoroni's test
fixture), which reproduces the reference vector 24.79 °C / 1006.62 hPa / 68.67 %RH.
Fault knobs: ``stuck`` (repeat the last values), ``out_of_range`` (ADC values beyond any
street), ``power_on()`` (a brown-out). All timing runs on the injected ``clock``.
"""

from __future__ import annotations

import math
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


_OSR = (0, 1, 2, 4, 8, 16, 16, 16)
_T_SB_MS = (0.5, 62.5, 125.0, 250.0, 500.0, 1000.0, 10.0, 20.0)
_FILTER = (1, 2, 4, 8, 16, 16, 16, 16)
_CTRL_HUM, _STATUS, _CTRL_MEAS, _CONFIG, _RESET, _DATA = 0xF2, 0xF3, 0xF4, 0xF5, 0xE0, 0xF7
_IM_UPDATE_S = 0.002
_EPS = 1e-9  # timing resolves to a nanosecond: a master that waits exactly the time is served


def measure_time_s(ctrl_meas: int, ctrl_hum: int) -> float:
    """The datasheet's maximum measurement time (appendix B) for these settings."""
    osr_t, osr_p, osr_h = _OSR[ctrl_meas >> 5 & 7], _OSR[ctrl_meas >> 2 & 7], _OSR[ctrl_hum & 7]
    ms = 1.25 + 2.3 * osr_t
    ms += 2.3 * osr_p + 0.575 if osr_p else 0.0
    ms += 2.3 * osr_h + 0.575 if osr_h else 0.0
    return ms / 1000


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
        self.regs[_DATA : _DATA + 8] = bytes((0x80, 0, 0, 0x80, 0, 0, 0x80, 0))
        self.ptr = 0
        self._hum_latched = 0
        self._forced: tuple[float, bytes] | None = None  # (ends at, data then)
        self._normal_t0 = 0.0  # normal mode: when it was entered
        self._normal_done = -1  # normal mode: the last cycle whose data is in place
        self._filtered: list[float | None] = [None, None]  # IIR state: adc_t, adc_p
        self._im_update_until = float("-inf")

    # -- bus side --------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self._update()
        if not data:
            return
        self.ptr = data[0]
        for i in range(0, len(data) - 1, 2):  # writes are (register, value) pairs
            self._write_reg(data[i], data[i + 1])

    def read(self, n: int) -> bytes:
        self._update()
        out = bytes(self.regs[(self.ptr + i) & 0xFF] for i in range(n))
        self.ptr = (self.ptr + n) & 0xFF
        return out

    def _write_reg(self, reg: int, value: int) -> None:
        if reg == _RESET:
            if value == 0xB6:
                self.power_on()
                self._im_update_until = self.clock() + _IM_UPDATE_S
            return
        if reg not in (_CTRL_HUM, _CTRL_MEAS, _CONFIG):
            return  # read-only registers ignore writes
        if reg == _CONFIG and self._mode() == 0b11:
            return  # "writes to the config register in normal mode may be ignored"
        self.regs[reg] = value
        if reg == _CTRL_MEAS:
            self._hum_latched = self.regs[_CTRL_HUM] & 0x07
            now = self.clock()
            if value & 0b11 in (0b01, 0b10):  # forced: one measurement, then sleep
                self._forced = (now + self._t_measure(), self._measure())
            elif value & 0b11 == 0b11:
                self._normal_t0, self._normal_done = now, -1

    def _mode(self) -> int:
        return self.regs[_CTRL_MEAS] & 0b11

    def _t_measure(self) -> float:
        return measure_time_s(self.regs[_CTRL_MEAS], self._hum_latched)

    def _update(self) -> None:
        """Bring the registers to ``clock()``: finished measurements land, status bits."""
        now = self.clock()
        measuring = False
        if self._forced is not None:
            ends, data = self._forced
            if now >= ends - _EPS:
                self.regs[_DATA : _DATA + 8] = data
                self.regs[_CTRL_MEAS] &= 0xFC  # back to sleep
                self._forced = None
            else:
                measuring = True
        if self._mode() == 0b11:
            t_meas = self._t_measure()
            period = t_meas + _T_SB_MS[self.regs[_CONFIG] >> 5] / 1000
            since = now - self._normal_t0
            done = math.floor((since - t_meas) / period + _EPS) if since >= t_meas - _EPS else -1
            if done > self._normal_done:
                self.regs[_DATA : _DATA + 8] = self._measure(done - self._normal_done)
                self._normal_done = done
            measuring = since % period < t_meas - _EPS
        self.regs[_STATUS] = (0x08 if measuring else 0) | (now < self._im_update_until)

    # -- physics ---------------------------------------------------------------
    def _measure(self, samples: int = 1) -> bytes:
        """The data registers after ``samples`` measurements of the present world."""
        self.measurements += 1
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
        c = _FILTER[self.regs[_CONFIG] >> 2 & 7]
        if c > 1:  # IIR: x += (new - x) / c per sample, the closed form for several
            keep = (1 - 1 / c) ** samples
            for i, adc in enumerate((adc_t, adc_p)):
                prev = self._filtered[i]
                self._filtered[i] = adc if prev is None else adc + (prev - adc) * keep
            adc_t, adc_p = (round(x) for x in self._filtered)  # type: ignore[arg-type]
        else:
            self._filtered = [None, None]
        data = bytearray(data_bytes(adc_t, adc_p, adc_h))
        if self.regs[_CTRL_MEAS] >> 2 & 7 == 0:
            data[0:3] = b"\x80\x00\x00"
        if self.regs[_CTRL_MEAS] >> 5 == 0:
            data[3:6] = b"\x80\x00\x00"
        if self._hum_latched == 0:
            data[6:8] = b"\x80\x00"
        return bytes(data)

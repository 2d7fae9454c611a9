"""Byte-exact register model of an ST LIS3DH accelerometer mounted on a light pole.

Modelled (datasheet DocID17530):
- Register file 0x00..0x3F with power-on defaults: WHO_AM_I 0x0F = 0x33, CTRL_REG0 0x1E =
  0x10, CTRL_REG1 0x20 = 0x07 (power-down, xyz enabled); writes to read-only registers are
  ignored.
- Pointer semantics: the first written byte is the sub-address; bit 7 set means
  auto-increment for the rest of the transaction (writes and reads), clear means every byte
  goes to / comes from the same register.
- Output data rate from CTRL_REG1[7:4] (1 Hz..400 Hz; 1.6 kHz low-power; 1.344 kHz, or
  5.376 kHz in low-power mode); samples appear at that rate on the injectable ``clock``.
  STATUS 0x27: XDA/YDA/ZDA/ZYXDA set on a new sample, each axis flag cleared by reading
  its OUT_H register, overrun flags when a sample lands on unread data.
- Output OUT_X_L..OUT_Z_H 0x28..0x2D: two's complement, left-justified, little-endian
  (big-endian if CTRL_REG4 BLE), resolution from LPen (CTRL_REG1 bit 3) and HR (CTRL_REG4
  bit 3): 8/10/12 bits, sensitivity from FS (CTRL_REG4[5:4]). Data is 0 while powered down.
  A sample is taken between transactions, so a burst read is always consistent (as BDU).
- CTRL_REG5 BOOT (bit 7) reloads the trimming values: it reads 1 for the 5 ms the boot
  takes, then clears itself; the control registers keep their values (AN3308).

Physics: ``source()`` gives {"tilt": deg, "azimuth": deg, "sway": deg amplitude}; the
instantaneous lean is tilt + sway*sin(2*pi*sway_hz*t) in the azimuth plane, gravity 1000 mg.
Fault knobs: ``stuck`` (outputs stop changing), ``brown_out()`` (registers to power-on).
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable

WHO_AM_I, CTRL_REG0, CTRL_REG1, CTRL_REG4, STATUS, OUT_X_L = 0x0F, 0x1E, 0x20, 0x23, 0x27, 0x28
CTRL_REG5, BOOT_S = 0x24, 0.005
_WRITABLE = set(range(0x1E, 0x27)) | {0x2E, 0x30, 0x32, 0x33, 0x34, 0x36, 0x37, 0x38}
_WRITABLE |= set(range(0x3A, 0x40))
_ODR_HZ = {0: 0, 1: 1, 2: 10, 3: 25, 4: 50, 5: 100, 6: 200, 7: 400, 8: 1600, 9: 1344}
# mg per digit by full scale, for (high resolution 12 bit, normal 10 bit, low power 8 bit)
_SENS = {0: (1, 4, 16), 1: (2, 8, 32), 2: (4, 16, 64), 3: (12, 48, 192)}
GRAVITY_MG = 1000.0


def encode(ax_mg: float, ay_mg: float, az_mg: float, reg1=0x57, reg4=0x88) -> bytes:
    """Accelerations in mg -> OUT_X_L..OUT_Z_H as the chip presents them in this mode."""
    if reg1 & 0x08:
        bits, mode = 8, 2
    elif reg4 & 0x08:
        bits, mode = 12, 0
    else:
        bits, mode = 10, 1
    sens = _SENS[(reg4 >> 4) & 3][mode]
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    out = b""
    for v, enabled in ((ax_mg, reg1 & 1), (ay_mg, reg1 & 2), (az_mg, reg1 & 4)):
        d = min(max(round(v / sens), lo), hi) if enabled else 0
        out += struct.pack(">h" if reg4 & 0x40 else "<h", d << (16 - bits))
    return out


def tilt_to_mg(tilt_deg: float, azimuth_deg: float) -> tuple[float, float, float]:
    t, a = math.radians(tilt_deg), math.radians(azimuth_deg)
    return (
        GRAVITY_MG * math.sin(t) * math.cos(a),
        GRAVITY_MG * math.sin(t) * math.sin(a),
        GRAVITY_MG * math.cos(t),
    )


class LIS3DHSim:
    def __init__(
        self,
        source: Callable[[], dict],
        clock: Callable[[], float] = time.monotonic,
        sway_hz: float = 1.0,
    ) -> None:
        self.source = source
        self.clock = clock
        self.sway_hz = sway_hz
        self.stuck = False
        self.brown_out()

    def brown_out(self) -> None:
        """Power-on reset: every register back to its default, data 0, powered down."""
        self.regs = bytearray(0x40)
        self.regs[WHO_AM_I] = 0x33
        self.regs[CTRL_REG0] = 0x10
        self.regs[CTRL_REG1] = 0x07
        self._ptr = 0
        self._inc = False
        self._boot_until = float("-inf")
        self._t0 = self.clock()
        self._last_index = 0  # the first sample lands 1/ODR after power-up

    # --- sampling -------------------------------------------------------------------
    def _odr(self) -> float:
        reg1 = self.regs[CTRL_REG1]
        if reg1 >> 4 == 9 and reg1 & 0x08:
            return 5376  # low-power mode at the top rate
        return _ODR_HZ.get(reg1 >> 4, 0)

    def _restart_sampling(self) -> None:
        self._t0 = self.clock()
        self._last_index = 0  # the first sample lands 1/ODR after power-up
        if self._odr() == 0:
            self.regs[OUT_X_L : OUT_X_L + 6] = bytes(6)
            self.regs[STATUS] = 0

    def _tick(self) -> None:
        if self.regs[CTRL_REG5] & 0x80 and self.clock() >= self._boot_until:
            self.regs[CTRL_REG5] &= 0x7F  # boot done: BOOT clears itself
        odr = self._odr()
        if odr == 0:
            return
        index = math.floor((self.clock() - self._t0) * odr)
        if index <= self._last_index:
            return
        skipped = index - self._last_index > 1  # samples we never showed overwrote data
        self._last_index = index
        t = self._t0 + index / odr
        if not self.stuck:
            v = self.source()
            lean = v.get("tilt", 0.0) + v.get("sway", 0.0) * math.sin(
                2 * math.pi * self.sway_hz * t
            )
            mg = tilt_to_mg(lean, v.get("azimuth", 0.0))
            self.regs[OUT_X_L : OUT_X_L + 6] = encode(
                *mg, self.regs[CTRL_REG1], self.regs[CTRL_REG4]
            )
        st = self.regs[STATUS]
        overrun = 0xF0 if skipped else ((st & 0x0F) << 4) | (st & 0xF0)  # where unread
        self.regs[STATUS] = overrun | 0x0F

    # --- bus ------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self._tick()
        if not data:
            return
        self._ptr, self._inc = data[0] & 0x3F, bool(data[0] & 0x80)
        for b in data[1:]:
            if self._ptr in _WRITABLE:
                self.regs[self._ptr] = b
                if self._ptr in (CTRL_REG1, CTRL_REG4):
                    self._restart_sampling()
                if self._ptr == CTRL_REG5 and b & 0x80:
                    self._boot_until = self.clock() + BOOT_S
            if self._inc:
                self._ptr = (self._ptr + 1) & 0x3F

    def read(self, n: int) -> bytes:
        self._tick()
        out = bytearray()
        for _ in range(n):
            reg = self._ptr
            out.append(self.regs[reg])
            if reg in (0x29, 0x2B, 0x2D):  # OUT_x_H read clears that axis' data-ready
                st = self.regs[STATUS] & ~(1 << ((reg - 0x29) // 2)) & 0xFF
                if not st & 0x07:
                    st = 0  # all three read: ZYXDA and the overrun flags clear too
                self.regs[STATUS] = st
            if self._inc:
                self._ptr = (self._ptr + 1) & 0x3F
        return bytes(out)

"""Byte-exact model of a Sensirion SHT31 in single-shot mode, no clock stretching.

Wire behaviour modelled (datasheet SHT3x-DIS):
- ``24 00`` triggers a high-repeatability measurement; for ``MEASURE_S`` (15.5 ms)
  afterwards every transaction NACKs (``OSError``), as the real chip does while busy.
- A read after the measurement returns ``T_H T_L CRC RH_H RH_L CRC`` once; reading again
  without a new trigger NACKs (there is no data), as does a read when nothing was triggered.
- ``30 A2`` soft reset (busy for 1.5 ms), ``F3 2D`` status word with CRC (``0x8010`` after
  reset: alert pending + reset detected), ``30 41`` clears the status flags.
- Unknown commands NACK.

The measured values are sampled from ``source()`` when the measurement is triggered.
Fault knobs: ``corrupt_crc_next`` (flip the next temperature CRC), ``stuck`` (repeat the
last raw values forever), ``out_of_range`` (temperature raw 0xFFFF = 130 degC, above spec).
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable

from edge.drivers.sht31 import crc8

MEASURE_S = 0.0155
RESET_S = 0.0015
STATUS_AFTER_RESET = 0x8010


def encode(temperature: float, humidity: float) -> bytes:
    """Physical values -> the 6 bytes the chip sends (clamped to the ADC span)."""
    st = min(max(round((temperature + 45.0) * 65535 / 175.0), 0), 0xFFFF)
    srh = min(max(round(humidity * 65535 / 100.0), 0), 0xFFFF)
    return _frame(st, srh)


def _frame(st: int, srh: int) -> bytes:
    t = st.to_bytes(2, "big")
    h = srh.to_bytes(2, "big")
    return t + bytes([crc8(t)]) + h + bytes([crc8(h)])


class SHT31Sim:
    def __init__(
        self,
        source: Callable[[], dict],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.clock = clock
        self.corrupt_crc_next = False
        self.stuck = False
        self.out_of_range = False
        self.status = STATUS_AFTER_RESET
        self._busy_until = float("-inf")
        self._out: bytes | None = None  # what the next read returns
        self._last: bytes | None = None
        self.measurements = 0

    def _nack_if_busy(self) -> None:
        if self.clock() < self._busy_until:
            raise OSError(errno.EIO, "SHT31 busy: NACK")

    def write(self, data: bytes) -> None:
        self._nack_if_busy()
        cmd = bytes(data[:2])
        if cmd == b"\x24\x00":
            self._out = self._measure()
            self._busy_until = self.clock() + MEASURE_S
        elif cmd == b"\x30\xa2":
            self._out = None
            self.status = STATUS_AFTER_RESET
            self._busy_until = self.clock() + RESET_S
        elif cmd == b"\xf3\x2d":
            s = self.status.to_bytes(2, "big")
            self._out = s + bytes([crc8(s)])
        elif cmd == b"\x30\x41":
            self.status &= ~0x8C10 & 0xFFFF  # clears alert, tracking-alert and reset flags
            self._out = None
        else:
            raise OSError(errno.EIO, f"SHT31: command {cmd.hex()} not acknowledged")

    def _measure(self) -> bytes:
        self.measurements += 1
        if self.stuck and self._last is not None:
            frame = self._last
        else:
            v = self.source()
            frame = encode(v["temperature"], v["humidity"])
            if self.out_of_range:
                frame = _frame(0xFFFF, int.from_bytes(frame[3:5], "big"))
            self._last = frame
        if self.corrupt_crc_next:
            self.corrupt_crc_next = False
            frame = frame[:2] + bytes([frame[2] ^ 0xFF]) + frame[3:]
        return frame

    def read(self, n: int) -> bytes:
        self._nack_if_busy()
        if self._out is None:
            raise OSError(errno.EIO, "SHT31: no data, NACK")
        out, self._out = self._out, None
        return out[:n] + b"\xff" * max(0, n - len(out))

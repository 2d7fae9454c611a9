"""Byte-exact model of a Sensirion SHT31: every command of the datasheet's command table.

Modelled (datasheet SHT3x-DIS, sections 4.3-4.11 and table 9; serial number from
Sensirion's "electronic identification code" note). Commands are 16 bit, MSB first:
- Single shot, no clock stretching: ``24 00`` / ``24 0B`` / ``24 16`` (high, medium, low
  repeatability) measure for ``MEASURE_S`` (15.5, 6.5, 4.5 ms max); until done every
  transaction NACKs, the address included, as the real chip does while busy.
- Single shot with clock stretching: ``2C 06`` / ``2C 0D`` / ``2C 10``. A read header during
  the measurement is ACKed and SCL held low until the result is there: the read returns it
  (``stretched_s`` adds up how long masters were held). Writes still NACK meanwhile.
- A result is read once; reading again, or when nothing was measured, NACKs (no data).
- Periodic: ``20 32/24/2F`` (0.5 mps, high/medium/low), ``21 30/26/2D`` (1), ``22 36/20/2B``
  (2), ``23 34/22/29`` (4), ``27 37/21/2A`` (10); ART ``2B 32`` (4 mps). A measurement every
  1/mps s, each done ``MEASURE_S`` after it starts. Fetch data ``E0 00`` hands the newest
  unread result to the next read and clears the memory; with none there, that read header
  NACKs. Break ``30 93`` ends periodic mode (busy 1 ms). A new periodic command restarts it.
  In periodic mode single-shot commands and soft reset NACK (soft reset is for an idle chip:
  drivers send break first); status, clear status, heater and fetch are served.
- Soft reset ``30 A2`` (idle only) and the general call reset (``06`` to address 0x00, from
  any mode): busy 1.5 ms, then idle, heater off, status ``0x8010`` (alert pending, reset seen).
- Heater on ``30 6D`` / off ``30 66`` (status bit 13). Status ``F3 2D``: word and CRC.
  Clear status ``30 41`` clears bits 15, 11, 10 and 4. Status bit 1 is set when a command
  was not processed (unknown, or not allowed in this mode), cleared by the next one that is.
- Serial number ``37 80`` (clock stretching) / ``36 82``: two words, each with its CRC.
- An empty write (an address probe, as ``scan()`` sends) is ACKed unless the chip is busy.
- Past the data the chip sends, the bus reads 0xFF (SDA released, pulled up).

Measured values are sampled from ``source()`` at a measurement's start. The heater's
warming is not modelled (the datasheet gives no figure to model it from): it shows in
the status word only. Fault knobs: ``corrupt_crc_next`` (flip the next result's
temperature CRC), ``stuck`` (repeat the last raw values forever), ``out_of_range``
(temperature raw 0xFFFF = 130 degC, above spec). All timing runs on the injected ``clock``.
"""

from __future__ import annotations

import errno
import math
import time
from collections.abc import Callable

from edge.drivers.sht31 import crc8

MEASURE_S = 0.0155  # high repeatability, the longest: what a driver that waits must allow
_MEASURE_S = {"high": 0.0155, "medium": 0.0065, "low": 0.0045}
RESET_S = 0.0015
BREAK_S = 0.001
STATUS_AFTER_RESET = 0x8010
SERIAL_NUMBER = 0x1A2B3C4D
_EPS = 1e-9  # timing resolves to a nanosecond: a master that waits exactly the time is served

_SINGLE = {  # command -> (repeatability, clock stretching)
    0x2400: ("high", False),
    0x240B: ("medium", False),
    0x2416: ("low", False),
    0x2C06: ("high", True),
    0x2C0D: ("medium", True),
    0x2C10: ("low", True),
}
_PERIODIC = {  # command -> (repeatability, measurements per second)
    0x2032: ("high", 0.5),
    0x2024: ("medium", 0.5),
    0x202F: ("low", 0.5),
    0x2130: ("high", 1),
    0x2126: ("medium", 1),
    0x212D: ("low", 1),
    0x2236: ("high", 2),
    0x2220: ("medium", 2),
    0x222B: ("low", 2),
    0x2334: ("high", 4),
    0x2322: ("medium", 4),
    0x2329: ("low", 4),
    0x2737: ("high", 10),
    0x2721: ("medium", 10),
    0x272A: ("low", 10),
    0x2B32: ("high", 4),  # ART: accelerated response time, 4 Hz
}
_FETCH, _BREAK, _SOFT_RESET = 0xE000, 0x3093, 0x30A2
_HEATER_ON, _HEATER_OFF = 0x306D, 0x3066
_STATUS, _CLEAR_STATUS = 0xF32D, 0x3041
_SERIAL = (0x3780, 0x3682)
_HEATER_BIT, _COMMAND_FAILED_BIT = 0x2000, 0x0002
_CLEARABLE = 0x8C10  # alert pending, RH and T tracking alerts, reset detected
_KNOWN = {*_SINGLE, *_PERIODIC, _FETCH, _BREAK, _SOFT_RESET, _HEATER_ON, _HEATER_OFF}
_KNOWN |= {_STATUS, _CLEAR_STATUS, *_SERIAL}


def encode(temperature: float, humidity: float) -> bytes:
    """Physical values -> the 6 bytes the chip sends (clamped to the ADC span)."""
    st = min(max(round((temperature + 45.0) * 65535 / 175.0), 0), 0xFFFF)
    srh = min(max(round(humidity * 65535 / 100.0), 0), 0xFFFF)
    return _frame(st, srh)


def _words(*words: int) -> bytes:
    out = b""
    for w in words:
        b = w.to_bytes(2, "big")
        out += b + bytes([crc8(b)])
    return out


def _frame(st: int, srh: int) -> bytes:
    return _words(st, srh)


def _nack(why: str) -> OSError:
    return OSError(errno.EIO, f"SHT31: {why}: NACK")


class SHT31Sim:
    def __init__(
        self,
        source: Callable[[], dict],
        clock: Callable[[], float] = time.monotonic,
        serial_number: int = SERIAL_NUMBER,
    ) -> None:
        self.source = source
        self.clock = clock
        self.serial_number = serial_number
        self.corrupt_crc_next = False
        self.stuck = False
        self.out_of_range = False
        self.measurements = 0
        self.stretched_s = 0.0
        self._last: bytes | None = None
        self.status = STATUS_AFTER_RESET
        self._busy_until = float("-inf")
        self._out: bytes | None = None  # what the next read returns
        self._stretch = False  # the pending single shot holds SCL instead of NACKing
        self._periodic: tuple[float, float, float] | None = None  # (t0, period, measure)
        self._taken = -1  # the newest periodic measurement already fetched

    @property
    def heater(self) -> bool:
        return bool(self.status & _HEATER_BIT)

    @property
    def periodic(self) -> bool:
        return self._periodic is not None

    # -- bus side --------------------------------------------------------------
    def _busy(self) -> bool:
        return self.clock() < self._busy_until - _EPS

    def write(self, data: bytes) -> None:
        if self._busy():
            raise _nack("busy")
        if not data:
            return  # an address probe: ACK
        if len(data) < 2:
            raise self._refuse(f"incomplete command {bytes(data).hex()}")
        cmd = int.from_bytes(data[:2], "big")
        if not self._command(cmd):
            raise self._refuse(f"command {cmd:04x} not acknowledged")
        self.status &= ~_COMMAND_FAILED_BIT

    def _refuse(self, why: str) -> OSError:
        self.status |= _COMMAND_FAILED_BIT
        return _nack(why)

    def _command(self, cmd: int) -> bool:
        """Act on one command; False if the chip does not process it in this state."""
        if cmd not in _KNOWN or (self.periodic and (cmd in _SINGLE or cmd == _SOFT_RESET)):
            return False
        if cmd == _FETCH and not self.periodic:
            return False
        now = self.clock()
        self._out, self._stretch = None, False  # a new command: earlier data is gone
        if cmd in _SINGLE:
            repeatability, self._stretch = _SINGLE[cmd]
            self._out = self._measure()
            self._busy_until = now + _MEASURE_S[repeatability]
        elif cmd in _PERIODIC:
            repeatability, mps = _PERIODIC[cmd]
            self._periodic = (now, 1.0 / mps, _MEASURE_S[repeatability])
            self._taken = -1
        elif cmd == _FETCH:
            done = self._newest_done(now)
            self._out = self._measure() if done > self._taken else None
            self._taken = max(self._taken, done)
        elif cmd == _BREAK:
            self._periodic = None
            self._busy_until = now + BREAK_S
        elif cmd == _SOFT_RESET:
            self.reset()
        elif cmd == _HEATER_ON:
            self.status |= _HEATER_BIT
        elif cmd == _HEATER_OFF:
            self.status &= ~_HEATER_BIT
        elif cmd == _STATUS:
            self._out = _words(self.status)
        elif cmd == _CLEAR_STATUS:
            self.status &= ~_CLEARABLE & 0xFFFF
        elif cmd in _SERIAL:
            self._out = _words(self.serial_number >> 16, self.serial_number & 0xFFFF)
        return True

    def general_call(self, data: bytes) -> bool:
        """A write to address 0x00; ``06`` is the reset, from any mode. True if taken."""
        if bytes(data[:1]) != b"\x06":
            return False
        self.reset()
        return True

    def reset(self) -> None:
        """Soft reset / general call reset: idle, heater off, status as after power-on."""
        self._periodic = None
        self._out, self._stretch = None, False
        self.status = STATUS_AFTER_RESET
        self._busy_until = self.clock() + RESET_S

    def read(self, n: int) -> bytes:
        if self._busy():
            if not (self._stretch and self._out is not None):
                raise _nack("busy")
            self.stretched_s += self._busy_until - self.clock()  # SCL held until done
            self._busy_until = float("-inf")
        if self._out is None:
            raise _nack("no data")
        out, self._out = self._out, None
        return out[:n] + b"\xff" * max(0, n - len(out))

    # -- periodic mode -----------------------------------------------------------
    def _newest_done(self, now: float) -> int:
        """Index of the newest periodic measurement finished by ``now`` (-1: none yet)."""
        assert self._periodic is not None
        t0, period, measure = self._periodic
        if now < t0 + measure - _EPS:
            return -1
        return math.floor((now - t0 - measure) / period + _EPS)

    # -- physics ---------------------------------------------------------------
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

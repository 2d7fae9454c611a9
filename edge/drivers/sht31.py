"""Sensirion SHT31 temperature and humidity, single shot, pipelined so read() never waits.

Why pipelined: a high-repeatability measurement takes up to 15.5 ms and the chip NACKs
its address until it is done (no clock stretching, which many I2C masters mishandle).
So each read() collects the measurement triggered by the previous call and triggers the
next one: the daemon polls every second or so and the result is always ready by then.

NACK handling: a NACK less than ``_MEAS_MS`` after our trigger means "still measuring"
(NotReady); any other NACK means the chip is gone (NoDevice), and we re-trigger so a
re-plugged or re-powered chip recovers on the next poll.

Portable: runs unchanged on MicroPython (``time.ticks_ms``, chosen once at import);
CPython falls back to ``time.monotonic``. ``clock`` (ms) and ``sleep_ms`` are injectable
for tests.
"""

import struct
import time

from edge.bus.i2c import I2CDevice, const
from edge.errors import ChecksumError, Implausible, NoDevice, NotReady

_CMD_MEASURE = b"\x24\x00"  # single shot, high repeatability, no clock stretching
_CMD_RESET = b"\x30\xa2"
_CMD_STATUS = b"\xf3\x2d"
_MEAS_MS = const(16)  # datasheet max 15.5 ms
_RESET_MS = const(2)  # datasheet max 1.5 ms
_T_MIN, _T_MAX = -40.01, 125.01  # specified range (+1 LSB); the ADC spans -45..130


def crc8(data):
    """Sensirion CRC-8: polynomial 0x31, init 0xFF, no reflection, no final xor."""
    crc = 0xFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


if hasattr(time, "ticks_ms"):  # MicroPython: wrapping ms ticks
    _ticks_ms = time.ticks_ms
    _ticks_diff = time.ticks_diff
    _sleep_ms = time.sleep_ms
else:  # CPython

    def _ticks_ms():
        return int(time.monotonic() * 1000)

    def _ticks_diff(a, b):
        return a - b

    def _sleep_ms(ms):
        time.sleep(ms / 1000)


class SHT31:
    MODEL = "sht31"

    def __init__(self, i2c, address=0x44, clock=None, sleep_ms=None):
        self._dev = I2CDevice(i2c, address, "SHT31")
        self._clock = clock or _ticks_ms
        self._sleep_ms = sleep_ms or _sleep_ms
        self._buf = bytearray(6)
        self._t_trigger = None  # clock value of the pending trigger, None if none
        self.status = None

    def start(self):
        """Soft reset, read the status word (proves the chip and its CRC), first trigger."""
        d = self._dev
        d.writeto(_CMD_RESET)
        self._sleep_ms(_RESET_MS)  # the only wait, once at start-up
        d.writeto(_CMD_STATUS)
        st = d.readfrom(3)
        if crc8(st[0:2]) != st[2]:
            raise ChecksumError("SHT31 status CRC")
        self.status = (st[0] << 8) | st[1]
        self._trigger()

    def _trigger(self):
        self._dev.writeto(_CMD_MEASURE)
        self._t_trigger = self._clock()

    def read(self):
        """The measurement triggered last time: {"temperature": degC, "humidity": %RH}."""
        if self._t_trigger is None:  # never started, or the last trigger was NACKed
            self._trigger()
            raise NotReady("SHT31: measurement triggered")
        buf = self._buf
        try:
            self._dev.readfrom_into(buf)
        except NoDevice as e:  # a NACK: still measuring, or gone
            if _ticks_diff(self._clock(), self._t_trigger) < _MEAS_MS:
                raise NotReady("SHT31 still measuring") from e
            self._retrigger()
            raise
        self._retrigger()  # pipelined: next measurement runs until the next poll
        if crc8(buf[0:2]) != buf[2] or crc8(buf[3:5]) != buf[5]:
            raise ChecksumError("SHT31 data CRC")
        st, srh = struct.unpack_from(">H", buf, 0)[0], struct.unpack_from(">H", buf, 3)[0]
        t = -45.0 + 175.0 * st / 65535.0
        rh = 100.0 * srh / 65535.0
        if not _T_MIN <= t <= _T_MAX:
            raise Implausible("SHT31 temperature %.2f" % t)
        return {"temperature": t, "humidity": rh}

    def _retrigger(self):
        try:
            self._trigger()
        except NoDevice:
            self._t_trigger = None

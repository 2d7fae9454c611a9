"""Sensirion SHT31 temperature and humidity, single shot, pipelined so read() never waits.

Why pipelined: a high-repeatability measurement takes up to 15.5 ms and the chip NACKs
its address until it is done (no clock stretching, which many I2C masters mishandle).
So each read() collects the measurement triggered by the previous call and triggers the
next one: the daemon polls every second or so and the result is always ready by then.

NACK handling: a NACK less than ``_MEAS_MS`` after our trigger means "still measuring"
(NotReady); any other NACK means the chip is gone (NoDevice), and we re-trigger so a
re-plugged or re-powered chip recovers on the next poll.

Portable: runs unchanged on MicroPython (``time.ticks_ms``); CPython falls back to
``time.monotonic``. ``clock`` (ms) and ``sleep_ms`` are injectable for tests.
"""

import struct
import time

from edge.errors import ChecksumError, Implausible, NoDevice, NotReady

_CMD_MEASURE = b"\x24\x00"  # single shot, high repeatability, no clock stretching
_CMD_RESET = b"\x30\xa2"
_CMD_STATUS = b"\xf3\x2d"
_MEAS_MS = 16  # datasheet max 15.5 ms
_RESET_MS = 2  # datasheet max 1.5 ms
_T_MIN, _T_MAX = -40.01, 125.01  # specified range (+1 LSB); the ADC spans -45..130


def crc8(data):
    """Sensirion CRC-8: polynomial 0x31, init 0xFF, no reflection, no final xor."""
    crc = 0xFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _ticks_ms():
    try:
        return time.ticks_ms()
    except AttributeError:  # CPython
        return int(time.monotonic() * 1000)


def _ticks_diff(a, b):
    try:
        return time.ticks_diff(a, b)
    except AttributeError:  # CPython
        return a - b


def _sleep_ms(ms):
    try:
        time.sleep_ms(ms)
    except AttributeError:  # CPython
        time.sleep(ms / 1000)


class SHT31:
    MODEL = "sht31"

    def __init__(self, i2c, address=0x44, clock=None, sleep_ms=None):
        self._i2c = i2c
        self._addr = address
        self._clock = clock or _ticks_ms
        self._sleep_ms = sleep_ms or _sleep_ms
        self._buf = bytearray(6)
        self._t_trigger = None  # clock value of the pending trigger, None if none
        self.status = None

    def start(self):
        """Soft reset, read the status word (proves the chip and its CRC), first trigger."""
        try:
            self._i2c.writeto(self._addr, _CMD_RESET)
            self._sleep_ms(_RESET_MS)  # the only wait, once at start-up
            self._i2c.writeto(self._addr, _CMD_STATUS)
            st = self._i2c.readfrom(self._addr, 3)
        except OSError as e:
            raise NoDevice("SHT31 at 0x%02x: %s" % (self._addr, e)) from e
        if crc8(st[0:2]) != st[2]:
            raise ChecksumError("SHT31 status CRC")
        self.status = (st[0] << 8) | st[1]
        self._trigger()

    def _trigger(self):
        self._i2c.writeto(self._addr, _CMD_MEASURE)
        self._t_trigger = self._clock()

    def read(self):
        """The measurement triggered last time: {"temperature": degC, "humidity": %RH}."""
        if self._t_trigger is None:  # never started, or the last trigger was NACKed
            try:
                self._trigger()
            except OSError as e:
                raise NoDevice("SHT31 at 0x%02x: %s" % (self._addr, e)) from e
            raise NotReady("SHT31: measurement triggered")
        buf = self._buf
        try:
            self._i2c.readfrom_into(self._addr, buf)
        except OSError as e:
            if _ticks_diff(self._clock(), self._t_trigger) < _MEAS_MS:
                raise NotReady("SHT31 still measuring") from e
            self._retrigger()
            raise NoDevice("SHT31 at 0x%02x: %s" % (self._addr, e)) from e
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
        except OSError:
            self._t_trigger = None

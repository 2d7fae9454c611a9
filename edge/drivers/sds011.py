"""Nova Fitness SDS011: PM2.5 and PM10 over UART, one 10-byte frame a second.

Never blocks: ``read()`` takes whatever bytes have arrived, resynchronises on the
0xAA 0xC0 header after noise, truncated or misaligned frames, keeps a partial frame
for the next call, and returns the newest valid frame. Bytes of bad frames are
counted, never logged (their length and checksum would be all a log may show).
Portable to MicroPython.
"""

import struct

from edge.errors import ChecksumError, FrameError, Implausible, NoDevice

_HEAD = 0xAA
_DATA = 0xC0
_REPLY = 0xC5
_TAIL = 0xAB
_FRAME = 10
_MAX_BUF = 64


def command(cmd, d1=0, d2=0, device=0xFFFF):
    """A 19-byte command frame: AA B4 cmd d1 d2 00x10 id id cs AB."""
    body = bytearray(15)
    body[0] = cmd
    body[1] = d1
    body[2] = d2
    body[13] = device & 0xFF
    body[14] = device >> 8
    return b"\xaa\xb4" + bytes(body) + bytes((sum(body) & 0xFF, _TAIL))


class SDS011:
    MODEL = "sds011"

    def __init__(self, uart):
        self.uart = uart
        self._buf = b""
        self.bad_frames = 0
        self.skipped_bytes = 0

    def start(self):
        try:
            self.wake()
            self.uart.write(command(0x02, 1, 0))  # report mode: active
        except OSError as exc:
            raise NoDevice("SDS011 serial port failed: %s" % exc) from exc

    def sleep(self):
        self.uart.write(command(0x06, 1, 0))

    def wake(self):
        self.uart.write(command(0x06, 1, 1))

    def read(self):
        try:
            data = self.uart.read()
        except OSError as exc:
            raise NoDevice("SDS011 serial port failed: %s" % exc) from exc
        if data:
            self._buf += data
        buf = self._buf
        latest = None
        bad = None
        i = 0
        n = len(buf)
        while i + 1 < n:
            if buf[i] != _HEAD or buf[i + 1] not in (_DATA, _REPLY):
                i += 1
                self.skipped_bytes += 1
                continue
            if i + _FRAME > n:
                break  # partial frame: wait for the rest
            frame = buf[i : i + _FRAME]
            if frame[9] != _TAIL:
                bad = FrameError("SDS011 frame without tail byte (misaligned or truncated)")
                self.bad_frames += 1
                i += 1  # resynchronise on the next header candidate
                continue
            if sum(frame[2:8]) & 0xFF != frame[8]:
                bad = ChecksumError("SDS011 checksum mismatch (frame of 10 bytes)")
                self.bad_frames += 1
                i += _FRAME
                continue
            if frame[1] == _DATA:
                pm25, pm10 = struct.unpack("<HH", frame[2:6])
                latest = (pm25 / 10, pm10 / 10)
            i += _FRAME
        rest = buf[i:]
        self._buf = rest[-_MAX_BUF:] if len(rest) > _MAX_BUF else rest
        if latest is not None:
            if latest[0] > 999.9 or latest[1] > 1999.9:
                raise Implausible("SDS011 value beyond its measuring range")
            return {"pm2_5": latest[0], "pm10": latest[1]}
        if bad is not None:
            raise bad
        return None

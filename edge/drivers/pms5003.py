"""Plantower PMS5003: PM1.0/PM2.5/PM10 and particle counts over UART, a frame every ~2.3 s.

Never blocks: ``read()`` scans what has arrived for ``42 4D`` headers, checks the
length field (28) and the 16-bit checksum (sum of bytes 0..29), resynchronises after
truncated and misaligned frames, and returns the newest valid frame. Mass
concentrations are the "atmospheric environment" words (4-6), which is what a street
sensor should report; counts are particles per 0.1 L. Portable to MicroPython.
"""

import struct

from edge.errors import ChecksumError, FrameError, Implausible, NoDevice

_FRAME = 32
_MAX_BUF = 96
_FIELDS = ("n0_3", "n0_5", "n1_0", "n2_5", "n5_0", "n10")


def command(cmd, dh=0, dl=0):
    """``42 4D cmd DH DL`` followed by the 16-bit sum of those five bytes."""
    body = bytes((0x42, 0x4D, cmd, dh, dl))
    return body + struct.pack(">H", sum(body))


class PMS5003:
    MODEL = "pms5003"

    def __init__(self, uart):
        self.uart = uart
        self._buf = b""
        self.bad_frames = 0

    def start(self):
        self.active()

    def _send(self, data):
        try:
            self.uart.write(data)
        except OSError as exc:
            raise NoDevice("PMS5003 serial port failed: %s" % exc) from exc

    def active(self):
        self._send(command(0xE1, 0, 1))

    def passive(self):
        self._send(command(0xE1, 0, 0))

    def request_read(self):
        self._send(command(0xE2, 0, 0))

    def sleep(self):
        self._send(command(0xE4, 0, 0))

    def wake(self):
        self._send(command(0xE4, 0, 1))

    def read(self):
        try:
            data = self.uart.read()
        except OSError as exc:
            raise NoDevice("PMS5003 serial port failed: %s" % exc) from exc
        if data:
            self._buf += data
        buf = self._buf
        n = len(buf)
        i = 0
        latest = None
        bad = None
        while i + 1 < n:
            if buf[i] != 0x42 or buf[i + 1] != 0x4D:
                i += 1
                continue
            if i + 4 > n:
                break
            if buf[i + 2] != 0 or buf[i + 3] != 28:
                if buf[i + 2] == 0 and buf[i + 3] == 4:  # a command reply: 8 bytes
                    i += 8
                    continue
                bad = FrameError("PMS5003 frame length field is not 28")
                self.bad_frames += 1
                i += 1
                continue
            if i + _FRAME > n:
                break  # partial frame: wait for the rest
            frame = buf[i : i + _FRAME]
            if sum(frame[:30]) & 0xFFFF != struct.unpack(">H", frame[30:32])[0]:
                bad = ChecksumError("PMS5003 checksum mismatch (frame of 32 bytes)")
                self.bad_frames += 1
                i += 1  # a false header inside data also lands here: resynchronise
                continue
            latest = struct.unpack(">13H", frame[4:30])
            i += _FRAME
        rest = buf[i:]
        self._buf = rest[-_MAX_BUF:] if len(rest) > _MAX_BUF else rest
        if latest is not None:
            if latest[4] > 1000 or latest[5] > 1000:
                raise Implausible("PMS5003 concentration beyond its range")
            out = {"pm1_0": latest[3], "pm2_5": latest[4], "pm10": latest[5]}
            for k in range(6):
                out[_FIELDS[k]] = latest[6 + k]
            return out
        if bad is not None:
            raise bad
        return None

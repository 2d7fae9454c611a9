"""HLK-LD2450 24 GHz radar: people and bicycles crossing a line, counted on the pole.

Frames (30 bytes, 10 a second, no checksum): ``AA FF 03 00`` + 3 targets x (x, y, speed,
resolution) + ``55 CC``. x, y (mm) and speed (cm/s) are little-endian sign-magnitude
(bit 15 set: positive); an all-zero slot is no target.

The radar gives no track ids, so the driver tracks: each target is matched to the
nearest track of the previous frame within ``max_jump_mm``; a track whose x changes
sign across the virtual line x = 0 (the pole's own cross-section of the street), by
more than ``hysteresis_mm`` on each side, is one crossing. It is a bicycle if the
track's ground speed (distance over time, from positions, as radial speed is not
ground speed) is at least ``bike_min_mps`` (default 2.5 m/s = 9 km/h), else a person.
A heuristic: two people walking side by side closer than the radar resolves count
as one; a runner may count as a bicycle.

Positions live only in this object's RAM, for at most ``track_timeout_s``; ``read()``
returns counts only: {"people": n, "bicycles": m} since the last call, or None when no
frame arrived. Portable to MicroPython.
"""

import struct

from edge.errors import NoDevice

_HEAD = b"\xaa\xff\x03\x00"
_TAIL = b"\x55\xcc"
_FRAME = 30
_MAX_BUF = 120


def signed(raw):
    """LD2450 sign-magnitude: bit 15 set means positive."""
    return raw - 0x8000 if raw & 0x8000 else -raw


def decode_frame(frame):
    """[(x_mm, y_mm, speed_cms, resolution_mm)] for the non-empty slots."""
    out = []
    for k in range(3):
        x, y, v, res = struct.unpack_from("<HHHH", frame, 4 + 8 * k)
        if x == 0 and y == 0 and v == 0 and res == 0:
            continue
        out.append((signed(x), signed(y), signed(v), res))
    return out


class _Track:
    def __init__(self, x, y, t):
        self.x, self.y, self.t0, self.t = x, y, t, t
        self.x0, self.y0 = x, y
        self.path = 0.0
        self.side = -1 if x < 0 else 1
        self.armed = True


class LD2450:
    MODEL = "ld2450"

    def __init__(
        self,
        uart,
        max_jump_mm=900,
        hysteresis_mm=150,
        bike_min_mps=2.5,
        track_timeout_s=1.0,
        frame_s=0.1,
    ):
        self.uart = uart
        self.max_jump = max_jump_mm
        self.hyst = hysteresis_mm
        self.bike_min = bike_min_mps
        self.timeout = track_timeout_s
        self.frame_s = frame_s
        self._buf = b""
        self._tracks = []
        self._t = 0.0  # frame clock: frames come at a fixed rate
        self._people = 0
        self._bikes = 0

    def start(self):
        pass

    def _step(self, targets):
        self._t += self.frame_s
        t = self._t
        free = list(self._tracks)
        kept = []
        for x, y, _v, _res in targets:
            best, best_d = None, self.max_jump
            for tr in free:
                d = ((tr.x - x) ** 2 + (tr.y - y) ** 2) ** 0.5
                if d <= best_d:
                    best, best_d = tr, d
            if best is None:
                kept.append(_Track(x, y, t))
                continue
            free.remove(best)
            best.path += best_d
            best.x, best.y, best.t = x, y, t
            side = -1 if x < -self.hyst else (1 if x > self.hyst else 0)
            if side and side != best.side:
                best.side = side
                speed = best.path / 1000 / max(t - best.t0, self.frame_s)
                if speed >= self.bike_min:
                    self._bikes += 1
                else:
                    self._people += 1
            kept.append(best)
        kept += [tr for tr in free if t - tr.t < self.timeout]
        self._tracks = kept

    def read(self):
        try:
            data = self.uart.read()
        except OSError as exc:
            raise NoDevice("LD2450 serial port failed: %s" % exc) from exc
        if data:
            self._buf += data
        buf = self._buf
        frames = 0
        while True:
            i = buf.find(_HEAD)
            if i < 0:
                buf = buf[-3:]
                break
            if len(buf) - i < _FRAME:
                buf = buf[i:]
                break
            frame = buf[i : i + _FRAME]
            if frame[28:30] != _TAIL:
                buf = buf[i + 1 :]  # misaligned: look for the next header
                continue
            self._step(decode_frame(frame))
            frames += 1
            buf = buf[i + _FRAME :]
        self._buf = buf[-_MAX_BUF:]
        if not frames:
            return None
        out = {"people": self._people, "bicycles": self._bikes}
        self._people = self._bikes = 0
        return out

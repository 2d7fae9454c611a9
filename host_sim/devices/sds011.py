"""A byte-exact Nova Fitness SDS011 behind a UART (on a pty or in memory).

Active mode emits a data frame every ``period`` seconds; it answers the 19-byte
commands (checksum checked) with ``AA C5`` replies: 02 report mode, 04 query (in query
mode), 06 sleep/work, 08 working period. Asleep it ignores everything but the wake
command. Fault knobs for conformance tests: ``corrupt_next`` (bad checksum),
``truncate_next``, ``misalign`` (garbage before the next frame), ``stuck`` and
``out_of_range``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable


class SDS011Sim:
    BAUD = 9600

    def __init__(
        self, source: Callable[[], dict], period: float = 1.0, device_id: int = 0xA160
    ) -> None:
        self.source = source
        self.period = period
        self.device_id = device_id
        self.awake = True
        self.active = True
        self.working_period = 0
        self.corrupt_next = False
        self.truncate_next = False
        self.misalign = False
        self.stuck = False
        self.out_of_range = False
        self.frames_sent = 0
        self._next: float | None = None
        self._rx = bytearray()
        self._tx = bytearray()
        self._last: dict | None = None

    def frame(self, pm25: float, pm10: float) -> bytes:
        data = struct.pack("<HHH", round(pm25 * 10), round(pm10 * 10), self.device_id)
        return b"\xaa\xc0" + data + bytes((sum(data) & 0xFF, 0xAB))

    def _reply(self, cmd: int, d1: int, d2: int, d3: int = 0) -> None:
        body = bytes((cmd, d1, d2, d3, self.device_id & 0xFF, self.device_id >> 8))
        self._tx += b"\xaa\xc5" + body + bytes((sum(body) & 0xFF, 0xAB))

    def _data_frame(self) -> bytes:
        if self.stuck and self._last is not None:
            values = self._last
        else:
            values = self.source()
            self._last = values
        pm25, pm10 = values["pm2_5"], values["pm10"]
        if self.out_of_range:
            pm25, pm10 = 6000.0, 6000.0
        frame = self.frame(min(pm25, 6553.5), min(pm10, 6553.5))
        if self.corrupt_next:
            self.corrupt_next = False
            frame = frame[:8] + bytes(((frame[8] + 1) & 0xFF,)) + frame[9:]
        if self.truncate_next:
            self.truncate_next = False
            frame = frame[:6]
        if self.misalign:
            self.misalign = False
            frame = b"\x13\xaa\x37" + frame
        self.frames_sent += 1
        return frame

    def receive(self, data: bytes) -> None:
        self._rx += data
        while True:
            start = self._rx.find(b"\xaa\xb4")
            if start < 0:
                del self._rx[:-1]
                return
            if len(self._rx) - start < 19:
                del self._rx[:start]
                return
            cmd = bytes(self._rx[start : start + 19])
            del self._rx[: start + 19]
            if cmd[18] != 0xAB or sum(cmd[2:17]) & 0xFF != cmd[17]:
                continue  # the real sensor ignores bad commands silently
            self._command(cmd[2], cmd[3], cmd[4])

    def _command(self, cmd: int, d1: int, d2: int) -> None:
        if not self.awake and not (cmd == 0x06 and d1 == 1 and d2 == 1):
            return
        if cmd == 0x06:
            if d1 == 1:
                self.awake = bool(d2)
                self._next = None
            self._reply(0x06, d1, int(self.awake))
        elif cmd == 0x02:
            if d1 == 1:
                self.active = d2 == 0
            self._reply(0x02, d1, 0 if self.active else 1)
        elif cmd == 0x04:
            if not self.active:
                self._tx += self._data_frame()
        elif cmd == 0x08:
            if d1 == 1:
                self.working_period = d2
            self._reply(0x08, d1, self.working_period)

    def poll(self, now: float) -> bytes:
        if self.awake and self.active:
            if self._next is None:
                self._next = now  # the first frame comes right after waking
            while now >= self._next:
                self._tx += self._data_frame()
                self._next += self.period
        out, self._tx = bytes(self._tx), bytearray()
        return out

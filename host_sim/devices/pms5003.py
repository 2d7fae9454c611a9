"""A byte-exact Plantower PMS5003 behind a UART.

Active mode: a 32-byte frame every ``period`` seconds; passive mode: one frame per
``42 4D E2 00 00`` request. Sleep (E4 00 00) silences it; wake (E4 00 01) resumes.
Commands are answered with the 8-byte ``42 4D 00 04 cmd data sum`` reply. Fault knobs:
``corrupt_next``, ``truncate_next``, ``misalign``, ``stuck``, ``out_of_range``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from edge.drivers.pms5003 import command

COUNT_KEYS = ("n0_3", "n0_5", "n1_0", "n2_5", "n5_0", "n10")


def frame(
    pm1: int, pm25: int, pm10: int, counts: tuple = (0,) * 6, cf1: tuple | None = None
) -> bytes:
    words = list(cf1 or (pm1, pm25, pm10)) + [pm1, pm25, pm10, *counts, 0]
    body = b"\x42\x4d\x00\x1c" + struct.pack(">13H", *words)
    return body + struct.pack(">H", sum(body) & 0xFFFF)


class PMS5003Sim:
    BAUD = 9600

    def __init__(self, source: Callable[[], dict], period: float = 2.3) -> None:
        self.source = source
        self.period = period
        self.awake = True
        self.active = True
        self.corrupt_next = False
        self.truncate_next = False
        self.misalign = False
        self.stuck = False
        self.out_of_range = False
        self._next: float | None = None
        self._rx = bytearray()
        self._tx = bytearray()
        self._last: dict | None = None

    def _frame(self) -> bytes:
        v = self._last if self.stuck and self._last else self.source()
        self._last = v
        pm1, pm25, pm10 = (round(v.get(k, 0.0)) for k in ("pm1_0", "pm2_5", "pm10"))
        if self.out_of_range:
            pm1 = pm25 = pm10 = 5000
        counts = tuple(round(v.get(k, 0)) for k in COUNT_KEYS)
        f = frame(min(pm1, 0xFFFF), min(pm25, 0xFFFF), min(pm10, 0xFFFF), counts)
        if self.corrupt_next:
            self.corrupt_next = False
            f = f[:-1] + bytes(((f[-1] + 1) & 0xFF,))
        if self.truncate_next:
            self.truncate_next = False
            f = f[:17]
        if self.misalign:
            self.misalign = False
            f = b"\x42\x00\x4d\x42" + f
        return f

    def receive(self, data: bytes) -> None:
        self._rx += data
        while len(self._rx) >= 7:
            start = self._rx.find(b"\x42\x4d")
            if start < 0:
                del self._rx[:-1]
                return
            if len(self._rx) - start < 7:
                del self._rx[:start]
                return
            cmd = bytes(self._rx[start : start + 7])
            del self._rx[: start + 7]
            if command(cmd[2], cmd[3], cmd[4]) != cmd:
                continue
            self._command(cmd[2], cmd[4])

    def _command(self, cmd: int, dl: int) -> None:
        if not self.awake and cmd != 0xE4:
            return
        if cmd == 0xE1:
            self.active = bool(dl)
        elif cmd == 0xE2 and not self.active:
            self._tx += self._frame()
            return
        elif cmd == 0xE4:
            self.awake = bool(dl)
            self._next = None
        body = bytes((0x42, 0x4D, 0x00, 0x04, cmd, dl))
        self._tx += body + struct.pack(">H", sum(body))

    def poll(self, now: float) -> bytes:
        if self.awake and self.active:
            if self._next is None:
                self._next = now
            while now >= self._next:
                self._tx += self._frame()
                self._next += self.period
        out, self._tx = bytes(self._tx), bytearray()
        return out

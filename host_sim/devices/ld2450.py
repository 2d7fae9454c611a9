"""A byte-exact HLK-LD2450 radar and a street to look at.

``LD2450Sim(source)`` emits a frame every 0.1 s with up to three targets from
``source()`` (a list of (x_mm, y_mm, speed_cms)); more than three are not seen, as on
the real radar (the nearest three are reported). ``Street`` is such a source: people
(1.0-1.8 m/s) and cyclists (4-7 m/s) entering at either end at Poisson rates, walking
across the line x = 0, with the true crossings recorded for tests. Fault knobs:
``truncate_next``, ``misalign``.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable


def magnitude(v: int) -> int:
    """Encode sign-magnitude: positive values carry bit 15."""
    v = int(round(v))
    return (0x8000 | min(v, 0x7FFF)) if v >= 0 else min(-v, 0x7FFF)


def frame(targets: list[tuple[float, float, float]], resolution: int = 320) -> bytes:
    body = bytearray(b"\xaa\xff\x03\x00")
    for k in range(3):
        if k < len(targets):
            x, y, v = targets[k]
            body += struct.pack("<HHHH", magnitude(x), magnitude(y), magnitude(v), resolution)
        else:
            body += bytes(8)
    return bytes(body + b"\x55\xcc")


class LD2450Sim:
    BAUD = 256000

    def __init__(self, source: Callable[[], list], period: float = 0.1) -> None:
        self.source = source
        self.period = period
        self.truncate_next = False
        self.misalign = False
        self._next: float | None = None

    def receive(self, data: bytes) -> None:
        pass  # configuration commands are acknowledged by ignoring them here

    def poll(self, now: float) -> bytes:
        if self._next is None:
            self._next = now
        out = bytearray()
        while now >= self._next:
            seen = self.source()
            if isinstance(seen, dict):  # {"targets": [...]}: a fixed scene (conformance)
                seen = seen.get("targets", [])
            targets = sorted(seen, key=lambda t: t[0] ** 2 + t[1] ** 2)[:3]
            f = frame(targets)
            if self.truncate_next:
                self.truncate_next = False
                f = f[:13]
            if self.misalign:
                self.misalign = False
                f = b"\xaa\xff\x00" + f
            out += f
            self._next += self.period
        return bytes(out)


class Street:
    """People and bicycles passing the pole; advance it with the radar's clock."""

    def __init__(
        self,
        people_per_min: float,
        bikes_per_min: float,
        seed: int = 1,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.rates = (people_per_min / 60, bikes_per_min / 60)
        self.clock = clock
        self.t = None
        self.movers: list[list[float]] = []  # [x, y, vx, kind]
        self.crossed = {"people": 0, "bicycles": 0}
        self.spacing_s = 1.5  # arrivals are kept apart so the radar can tell them apart
        self._last_spawn = -1e9

    def __call__(self) -> list[tuple[float, float, float]]:
        now = self.clock() if self.clock else 0.0
        if self.t is None:
            self.t = now
        dt, self.t = now - self.t, now
        for m in self.movers:
            before = m[0]
            m[0] += m[2] * dt * 1000
            if (before < 0) != (m[0] < 0):
                self.crossed["people" if m[3] == 0 else "bicycles"] += 1
        self.movers = [m for m in self.movers if abs(m[0]) <= 6000]
        for kind, rate in enumerate(self.rates):
            if rate and self.rng.random() < rate * dt and now - self._last_spawn > self.spacing_s:
                self._last_spawn = now
                direction = self.rng.choice((-1, 1))
                speed = self.rng.uniform(1.0, 1.8) if kind == 0 else self.rng.uniform(4, 7)
                y = self.rng.uniform(1500, 4500)
                self.movers.append([-5500.0 * direction, y, speed * direction, kind])
        return [(m[0], m[1], abs(m[2]) * 100) for m in self.movers]

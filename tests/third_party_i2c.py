"""The small adapter that runs Adafruit's CircuitPython drivers on CPython against our
simulators: a ``busio.I2C`` over ``host_sim.i2c.SimI2C``, and one simulated clock that
the bus, the simulator and the driver's ``time`` share.

Adafruit's drivers reach the bus through ``adafruit_bus_device.i2c_device.I2CDevice``
(installed from PyPI as it is), which calls a ``busio.I2C``'s ``try_lock``/``unlock``,
``writeto``, ``readfrom_into`` and ``writeto_then_readfrom`` (with start/end slices).
``BusioI2C`` is exactly that over a ``SimI2C``; bus errors stay ``OSError``, as on a board.

Time: drivers sleep for the datasheet's waits, and some poll a flag without sleeping.
So every transaction moves the clock on by its time on the wire at 100 kHz (9 clocks a
byte, address included, plus start and stop), ``sleep`` moves it by the time asked, and a
budget stops a driver that would otherwise wait forever.
"""

from __future__ import annotations

import threading
import types

from host_sim.i2c import SimI2C


class SimClock:
    """Simulated seconds: call it (simulators), or use it as a driver's ``time`` module."""

    def __init__(self, t: float = 1000.0, budget_s: float = 600.0) -> None:
        self.t = t
        self._limit = t + budget_s

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("simulated time only moves forward")
        self.t += seconds
        if self.t > self._limit:
            raise RuntimeError("simulated time budget spent: does the driver wait forever?")

    def module(self) -> types.SimpleNamespace:
        """A stand-in for the ``time`` module, for a driver's ``module.time``."""
        return types.SimpleNamespace(
            sleep=self.advance, time=self, monotonic=self, monotonic_ns=lambda: int(self.t * 1e9)
        )


def use_sim_time(monkeypatch, clock: SimClock, *modules: types.ModuleType) -> None:
    """Point each driver module's ``time`` (or ``from time import sleep``) at ``clock``."""
    for mod in modules:
        if isinstance(getattr(mod, "time", None), types.ModuleType):
            monkeypatch.setattr(mod, "time", clock.module())
        if getattr(mod, "sleep", None) is not None:
            monkeypatch.setattr(mod, "sleep", clock.advance)


class BusioI2C:
    """``busio.I2C`` over a simulated bus (the methods Adafruit's bus device calls)."""

    def __init__(self, bus: SimI2C, clock: SimClock | None = None, frequency: int = 100_000):
        self.bus = bus
        self.clock = clock
        self.frequency = frequency
        self._lock = threading.Lock()

    def _wire(self, nbytes: int) -> None:
        if self.clock is not None:
            self.clock.advance(((nbytes + 1) * 9 + 2) / self.frequency)

    def try_lock(self) -> bool:
        return self._lock.acquire(blocking=False)

    def unlock(self) -> None:
        self._lock.release()

    def scan(self) -> list[int]:
        return self.bus.scan()

    def writeto(self, address: int, buffer, *, start: int = 0, end: int | None = None) -> None:
        data = bytes(buffer[start:end])
        try:
            self.bus.writeto(address, data)
        finally:
            self._wire(len(data))

    def readfrom_into(self, address: int, buffer, *, start: int = 0, end: int | None = None):
        end = len(buffer) if end is None else end
        try:
            buffer[start:end] = self.bus.readfrom(address, end - start)
        finally:
            self._wire(end - start)

    def writeto_then_readfrom(
        self,
        address: int,
        buffer_out,
        buffer_in,
        *,
        out_start: int = 0,
        out_end: int | None = None,
        in_start: int = 0,
        in_end: int | None = None,
    ) -> None:
        """A write, a repeated start, a read: MicroPython's ``writeto(stop=False)``."""
        data = bytes(buffer_out[out_start:out_end])
        try:
            self.bus.writeto(address, data, stop=False)
        finally:
            self._wire(len(data))
        self.readfrom_into(address, buffer_in, start=in_start, end=in_end)

    def deinit(self) -> None:
        pass

    def __enter__(self) -> BusioI2C:
        return self

    def __exit__(self, *exc) -> None:
        self.deinit()

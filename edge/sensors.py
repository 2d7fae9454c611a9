"""Sensor supervision: poll each driver, feed the window, and survive every fault.

A driver that raises is counted (by the exception's ``counter``) and carries on; one
that loses its device (``NoDevice``/``OSError``) is restarted with exponential
backoff, so a replugged sensor comes back by itself. A driver call that takes longer
than ``slow_s`` is counted as ``slow_reads``. Values outside the descriptor's
plausible range never reach the window. Only fields whose privacy class the gate
admits are aggregated at all: personal fields are dropped here, counted, and never
stored.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from importlib.metadata import entry_points

from edge.descriptors import SensorDescriptor
from edge.errors import NoDevice, SensorError
from edge.health import Health
from edge.window import Window

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "lightpole.drivers"
AGGREGATED = ("public",)


def driver_class(desc: SensorDescriptor) -> type:
    """The class named by an installed ``lightpole.drivers`` entry point, else by the descriptor.

    An entry point that names another class than the descriptor's ``driver`` shadows it:
    the pole runs the installed one and logs why (``driver_shadow``)."""
    eps = _driver_entry_points(desc.model)
    if eps:
        shadow = driver_shadow(desc, eps)
        if shadow:
            log.warning("%s", shadow)
        return eps[0].load()
    if not desc.driver:
        raise LookupError(
            f'no driver for {desc.model!r}: set "driver" in {desc.source} or install a package '
            f"with a {ENTRY_POINT_GROUP!r} entry point named {desc.model!r}"
        )
    module, _, cls = desc.driver.partition(":")
    return getattr(importlib.import_module(module), cls)


def _driver_entry_points(model: str) -> list:
    return [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == model]


def driver_shadow(desc: SensorDescriptor, eps: list | None = None) -> str | None:
    """Why the driver a pole would run for ``desc`` is not the one its descriptor names
    (an installed ``lightpole.drivers`` entry point of the same name), or None."""
    eps = _driver_entry_points(desc.model) if eps is None else eps
    named = desc.driver.replace(" ", "")
    others = [ep for ep in eps if ep.value.replace(" ", "") != named]
    if not desc.driver or not others:
        return None
    ep = others[0]
    dist = ep.dist.name if ep.dist else "an installed package"
    return (
        f"the driver of {desc.model!r} is shadowed: {desc.source} names {desc.driver!r}, but "
        f"{dist} registers {ep.value!r} as {ENTRY_POINT_GROUP!r} entry point {ep.name!r}, and "
        f"a pole runs that one. Uninstall it (pip uninstall {dist}), or point the "
        f'descriptor\'s "driver" at {ep.value!r}'
    )


class DriverHung(Exception):
    """A driver call did not return within the sensor's timeout."""


class _Worker:
    """One daemon thread running a sensor's driver calls, one at a time."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=f"driver:{name}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, fut, loop = job
            try:
                result, exc = fn(), None
            except BaseException as e:  # handed to the awaiting task, not swallowed
                result, exc = None, e
            try:
                loop.call_soon_threadsafe(_settle, fut, result, exc)
            except RuntimeError:  # the loop is gone (shutdown): nobody waits any more
                return

    def submit(self, fn: Callable[[], object]) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._jobs.put((fn, fut, loop))
        return fut

    def abandon(self) -> None:
        self._jobs.put(None)  # the thread exits after its current (hung) call, if ever


def _settle(fut: asyncio.Future, result: object, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class SensorRunner:
    def __init__(
        self,
        name: str,
        desc: SensorDescriptor,
        make_driver: Callable[[], object],
        health: Health,
        current_window: Callable[[], Window],
        slow_s: float = 0.5,
        observers: list | None = None,
        timeout_s: float | None = None,
        count_sink: Callable[[tuple, int], None] | None = None,
        unique: tuple | None = None,
    ) -> None:
        self.name = name
        self.desc = desc
        self.make_driver = make_driver
        self.health = health
        self.current_window = current_window
        self.slow_s = slow_s
        self.driver: object | None = None
        self.samples = 0
        self.observers = observers if observers is not None else []
        self.timeout_s = timeout_s
        self._worker: _Worker | None = None
        self._fields = {k: f for k, f in desc.fields.items() if f.privacy in AGGREGATED}
        # Count fields go to the clock-aligned bins of the privacy gate, never the window.
        self._counts = (
            {k for k, f in desc.fields.items() if f.privacy == "count"}
            if (count_sink is not None)
            else set()
        )
        self.count_sink = count_sink
        self.unique = unique  # (personal field with addresses, UniqueCounter) or None
        self._repeats: dict[str, tuple[float, int]] = {}
        self._last_data = time.monotonic()
        self._silent = False
        health.sensor_state(name, False)

    def _started(self, driver: object) -> None:
        self.driver = driver
        self._last_data = time.monotonic()  # a (re)started sensor gets its full grace time
        self.health.sensor_state(self.name, True)
        if self.health.clear_alarm(f"{self.name}_missing"):
            log.info("sensor %s is back", self.name)

    def _account(self, values: dict | None, exc: BaseException | None, elapsed: float) -> None:
        """Book one read: errors by their counter, slow reads, accepted values."""
        if elapsed > self.slow_s:
            self.health.count(f"{self.name}.slow_reads")
        if exc is not None:
            if isinstance(exc, SensorError) and not isinstance(exc, NoDevice):
                self.health.count(f"{self.name}.{getattr(exc, 'counter', 'sensor_errors')}")
                return
            raise exc
        now = time.monotonic()
        if values:
            self._last_data = now
            if self._silent:
                self._silent = False
                self.health.sensor_state(self.name, True)
                if self.health.clear_alarm(f"{self.name}_missing"):
                    log.info("sensor %s is talking again", self.name)
            self._accept(values)
        elif (
            self.desc.silent_after_s
            and not self._silent
            and now - self._last_data > self.desc.silent_after_s
        ):
            self._silent = True
            self.health.sensor_state(self.name, False)
            quiet = f"no data for {now - self._last_data:.0f} s"
            if self.health.raise_alarm(f"{self.name}_missing", quiet):
                log.warning(
                    "sensor %s (%s): %s; check its cable and power",
                    self.name,
                    self.desc.model,
                    quiet,
                )

    def _accept(self, values: dict) -> None:
        window = self.current_window()
        accepted = {}
        if self.unique is not None and values.get(self.unique[0]):
            counter = self.unique[1]  # the one path personal data may take: into a
            for probe in values[self.unique[0]]:  # keyed RAM-only set, per window
                counter.add(probe[0])
        for field, value in values.items():
            if field in self._counts:
                if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                    self.count_sink((self.name, field), value)
                continue
            spec = self._fields.get(field)
            if spec is None:
                # Not declared publishable (or personal): it stops here, in RAM.
                self.health.count("gate_dropped_fields")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.health.count(f"{self.name}.bad_type")
                continue
            if spec.scale != 1:
                value = value * spec.scale
            if not spec.plausible(value):
                self.health.count(f"{self.name}.implausible")
                continue
            if spec.stuck_after and self._stuck(field, value, spec.stuck_after):
                continue
            window.add((self.name, field), value)
            accepted[field] = value
            self.samples += 1
        for observer in self.observers:
            observer.observe(self.name, accepted)

    def _stuck(self, field: str, value: float, limit: int) -> bool:
        """True once a field repeats the exact same value ``limit`` times: a frozen sensor
        (or a frozen bus) would otherwise feed the same number into every window."""
        last, n = self._repeats.get(field, (None, 0))
        n = n + 1 if value == last else 1
        self._repeats[field] = (value, n)
        alarm = f"{self.name}_stuck"
        if n >= limit:
            if self.health.raise_alarm(alarm, f"{field} = {value} x{n}"):
                log.warning("sensor %s: %s has not changed in %d samples", self.name, field, n)
            self.health.count(f"{self.name}.stuck")
            return True
        if n == 1 and alarm in self.health.alarms:
            self.health.clear_alarm(alarm)
        return False

    def poll_once(self) -> None:
        """One supervised poll, in the caller's thread (tests, conformance)."""
        if self.driver is None:
            driver = self.make_driver()
            driver.start()
            self._started(driver)
        t0 = time.monotonic()
        values, exc = None, None
        try:
            values = self.driver.read()
        except Exception as e:
            exc = e
        self._account(values, exc, time.monotonic() - t0)

    async def _call(self, fn: Callable[[], object]) -> object:
        """Run a driver call; with a timeout, in this sensor's worker thread, so a driver
        that hangs (a wedged bus, a blocking read) cannot stall the pole."""
        if not self.timeout_s:
            return fn()
        if self._worker is None:
            self._worker = _Worker(self.name)
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that arrives as the result does (CPython gh-86296), and the
            # sensor task then polls on after Pole.run cancelled it: a hang at shutdown.
            async with asyncio.timeout(self.timeout_s):
                return await self._worker.submit(fn)
        except TimeoutError:
            self._worker.abandon()  # its thread may never come back; start a new one
            self._worker = None
            self.health.count(f"{self.name}.timeouts")
            raise DriverHung(f"driver call took longer than {self.timeout_s} s") from None

    async def call(self, fn: Callable[[object], object]) -> object:
        """Run ``fn(driver)`` where the driver's reads run (its worker), so a command (the
        lamp test's DALI level) never interleaves with a read on the same bus."""
        driver = self.driver
        if driver is None:
            raise NoDevice(f"sensor {self.name} is not running")
        return await self._call(lambda: fn(driver))

    async def poll_async(self) -> None:
        """One supervised poll as the daemon does it."""
        if self.driver is None:
            driver = self.make_driver()
            await self._call(driver.start)
            self._started(driver)
        t0 = time.monotonic()
        values, exc = None, None
        try:
            values = await self._call(self.driver.read)
        except DriverHung:
            raise
        except Exception as e:
            exc = e
        self._account(values, exc, time.monotonic() - t0)

    async def run(self) -> None:
        backoff = 1.0
        while True:
            try:
                await self.poll_async()
                backoff = 1.0
                await asyncio.sleep(self.desc.poll_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a sick sensor never stops the pole
                self.driver = None
                self.health.sensor_state(self.name, False)
                self.health.count(f"{self.name}.restarts")
                if self.health.raise_alarm(f"{self.name}_missing", type(exc).__name__):
                    log.warning(
                        "sensor %s (%s) not answering: %s: %s; retrying with backoff. Check its "
                        "cable, address/port and power.",
                        self.name,
                        self.desc.model,
                        type(exc).__name__,
                        exc,
                    )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)

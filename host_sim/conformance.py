"""Driver conformance: any driver against its byte-exact simulator, with faults injected.

Runs the driver inside the daemon's own supervision (``edge.sensors.SensorRunner``:
restart with backoff, plausibility from the descriptor, stuck detection) on a
simulated bus, in simulated time, and checks one behaviour per row:

    reads value      the physical value set in the simulator comes back within tolerance
    wrong checksum   a frame/CRC with a bad checksum is refused (ChecksumError), then recovery
    truncated frame  a cut-off frame is survived, the next good frame is read
    misaligned frame garbage before a frame is skipped, the frame is read
    NACK             an I2C device that stops acknowledging raises NoDevice (no hang, no crash)
    timeout          no driver call blocks, on any bus; a silent serial device: read()
                     returns at once with nothing
    stuck value      the simulator's stuck switch freezes what it sends, and a frozen value
                     is flagged (alarm <sensor>_stuck) for fields that declare stuck_after
    out of range     no value outside the descriptor's range reaches the window
    unplug/replug    the sensor is restarted by the supervisor and reads again

Every driver call (constructor, ``start()``, ``read()``) runs in a worker thread under a
time limit (``TIME_LIMIT_S``): a driver that blocks fails its row with "timeout
(blocks)" instead of hanging the run. Every fault switch a row flips (``corrupt_next``,
``truncate_next``, ``misalign``, ``stuck``, ``out_of_range``, ``no_reply``) is checked
to change what the simulator sends, against a twin rig that runs in lockstep without
the fault: a switch that does nothing would make its row pass for nothing.

A row is ``pass``, ``FAIL`` (with the reason) or ``n/a`` (why it does not apply).
Usage: ``pole-sim conformance [MODEL ...]`` or ``--descriptor my_sensor.json`` for a
driver that lives outside this repository (its ``driver``/``simulator`` entries, or
a ``lightpole.drivers`` entry point, name the classes). A descriptor whose driver an
installed entry point shadows is refused: a pole would run the other one. Every hook
a driver or simulator may use is in docs/add-a-sensor.md.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edge.descriptors import DescriptorError, SensorDescriptor, load_all_sensors
from edge.errors import NoDevice
from edge.health import Health
from edge.sensors import SensorRunner, driver_class, driver_shadow
from edge.window import Window
from host_sim.i2c import SimI2C
from host_sim.serial_pty import LoopbackUART

ROWS = (
    "reads value",
    "wrong checksum",
    "truncated frame",
    "misaligned frame",
    "NACK",
    "timeout",
    "stuck value",
    "out of range",
    "unplug/replug",
)
TIME_LIMIT_S = 1.0  # one driver call; the daemon abandons a call after driver_timeout_s
SLOW_S = 0.5  # five polls of a driver that never waits take milliseconds


def _load(spec: str) -> type:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


class ShadowedDriver(LookupError):
    """An installed entry point, not the descriptor's ``driver``, would run on a pole."""


class Blocked(Exception):
    """A driver call did not return within the time limit."""


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Tap:
    """The simulator as the bus sees it, with a log of everything it sends (return values
    and NACKs), so a twin rig can tell whether a fault switch changed anything."""

    def __init__(self, device: object) -> None:
        self._device = device
        self.sent: list[tuple] = []

    def __getattr__(self, name: str) -> object:
        attr = getattr(self._device, name)
        if not callable(attr):
            return attr

        def call(*args: object, **kwargs: object) -> object:
            try:
                out = attr(*args, **kwargs)
            except Exception as exc:
                self.sent.append((name, type(exc).__name__))
                raise
            if out is not None:
                self.sent.append((name, out))
            return out

        return call


class _Recorded:
    """The driver as the runner sees it: names the call in progress (for a blocking one)
    and records what ``read()`` returned, field by field."""

    def __init__(self, driver: object, rig: Rig) -> None:
        self._driver = driver
        self._rig = rig

    def start(self) -> None:
        self._rig.phase = "start()"
        self._driver.start()

    def read(self) -> dict | None:
        self._rig.phase = "read()"
        values = self._driver.read()
        for k, v in (values or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self._rig.raw.setdefault(k, []).append(v)
        return values

    def __getattr__(self, name: str) -> object:
        return getattr(self._driver, name)


class _Worker:
    """One daemon thread running a rig's polls one at a time, each under a time limit.
    A call that overruns is abandoned with its thread (Python cannot stop it)."""

    def __init__(self) -> None:
        self._jobs: list = []
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="conformance", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._ready:
                while not self._jobs:
                    self._ready.wait()
                job = self._jobs.pop(0)
            if job is None:
                return
            fn, box, done = job
            try:
                box.append((fn(), None))
            except BaseException as exc:  # handed to the caller
                box.append((None, exc))
            done.set()

    def call(self, fn: Callable[[], object], limit: float) -> object:
        box: list = []
        done = threading.Event()
        with self._ready:
            self._jobs.append((fn, box, done))
            self._ready.notify()
        if not done.wait(limit):
            raise Blocked
        result, exc = box[0]
        if exc is not None:
            raise exc
        return result

    def stop(self) -> None:
        with self._ready:
            self._jobs.append(None)
            self._ready.notify()


class Rig:
    """One driver + simulator + supervisor on a simulated bus, in simulated time."""

    def __init__(
        self,
        desc: SensorDescriptor,
        driver_cls: type | None = None,
        time_limit_s: float = TIME_LIMIT_S,
    ) -> None:
        self.desc = desc
        self.driver_cls = driver_cls
        self.time_limit_s = time_limit_s
        self.time = FakeTime()
        conf = desc.conformance
        self.values = dict(
            conf.get("source")
            or {  # in the driver's unit: the descriptor's range divided by its scale
                k: (f.min + f.max) / 2 / f.scale
                for k, f in desc.fields.items()
                if f.min is not None and f.max is not None
            }
        )
        sim_cls = _load(desc.simulator)
        kwargs = {"clock": self.time} if "clock" in inspect.signature(sim_cls).parameters else {}
        self.sim = sim_cls(lambda: dict(self.values), **kwargs)
        self.tap = Tap(self.sim)
        self.health = Health()
        self.window = Window(0, 3600)
        self.address = desc.default_address
        if desc.bus == "i2c":
            self.bus = SimI2C()
            self.bus.attach(self.address, self.tap)
        elif desc.bus == "uart":
            self.bus = LoopbackUART(self.tap, now=self.time.t)
        else:  # a bridge: the simulator is the bridge
            self.bus = self.tap
        cls = driver_cls or driver_class(desc)
        params = inspect.signature(cls).parameters
        opts: dict = {}
        if "clock" in params:  # drivers that time things take a ms clock and sleep_ms
            opts["clock"] = lambda: int(self.time.t * 1000)
        if "sleep_ms" in params:
            opts["sleep_ms"] = self._sleep_ms

        self.raw: dict[str, list[float]] = {}  # what the driver returned, field by field
        self.phase = ""  # the driver call in progress

        def make() -> object:
            self.phase = "the constructor"
            if desc.bus == "i2c":
                drv = cls(self.bus, address=self.address, **opts)
            else:
                drv = cls(self.bus, **opts)
            return _Recorded(drv, self)

        self.runner = SensorRunner(desc.model, desc, make, self.health, lambda: self.window)
        self.errors: list[Exception] = []
        self.twin: Rig | None = None
        self._worker: _Worker | None = None

    def _sleep_ms(self, ms: float) -> None:
        self.time.t += ms / 1000

    def step(self, n: int = 1) -> None:
        """``n`` polls, as the daemon's loop does them, with time advancing between (the
        twin, if any, polls in lockstep)."""
        for _ in range(n):
            self._poll()
            if self.twin is not None:
                self.twin._poll()

    def _poll(self) -> None:
        self.time.t += self.desc.poll_s
        if isinstance(self.bus, LoopbackUART):
            self.bus.advance(self.desc.poll_s)
        if self._worker is None:
            self._worker = _Worker()
        try:
            self._worker.call(self.runner.poll_once, self.time_limit_s)
        except Blocked:
            self._worker = None  # its thread is stuck in the driver; it is abandoned
            raise Blocked(f"{self.phase} did not return within {self.time_limit_s:g} s") from None
        except Exception as exc:  # what SensorRunner.run does: restart later
            self.errors.append(exc)
            self.runner.driver = None

    def close(self) -> None:
        for rig in (self, self.twin):
            if rig is not None and rig._worker is not None:
                rig._worker.stop()
                rig._worker = None

    # -- fault switches, proved against a twin -----------------------------------------

    def follow(self) -> None:
        """Start a twin: the same driver and simulator, stepped in lockstep, never faulted."""
        self.twin = Rig(self.desc, self.driver_cls, self.time_limit_s)

    def unfollow(self) -> None:
        if self.twin is not None:
            self.twin.close()
            self.twin = None

    def marks(self) -> tuple[int, int]:
        assert self.twin is not None
        return len(self.tap.sent), len(self.twin.tap.sent)

    def switch_changed(self, marks: tuple[int, int]) -> bool:
        """Whether the simulator sent anything else since ``marks`` than its twin did."""
        assert self.twin is not None
        return self.tap.sent[marks[0] :] != self.twin.tap.sent[marks[1] :]

    def perturb(self) -> bool:
        """Change every numeric source value by a clearly visible step (in range), here and
        in the twin; False if the source has no number to change."""
        changed = False
        for rig in (self, self.twin):
            if rig is None:
                continue
            for k, v in rig.values.items():
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    continue
                rig.values[k] = _moved(v, rig.desc.fields.get(k))
                changed = True
        return changed

    def fresh_window(self) -> None:
        self.window = Window(0, 3600)
        self.raw = {}

    def means(self) -> dict[str, float]:
        """Window means; for fields the window does not take (count, personal: they
        leave, if at all, through the privacy gate) the mean of what the driver returned."""
        out = {k: sum(v) / len(v) for k, v in self.raw.items() if v}
        out.update({k[1]: s.mean() for k, s in self.window.series.items() if s.count})
        return out


def _moved(value: float, field: object) -> float:
    """``value`` moved by 5 % of the field's range (at least 20 steps of its resolution),
    or by 10 % (at least 1) for a source value that is not a field; kept within range."""
    lo = hi = None
    if field is not None:
        scale = field.scale or 1
        lo = None if field.min is None else field.min / scale
        hi = None if field.max is None else field.max / scale
        span = (hi - lo) if lo is not None and hi is not None else abs(value)
        delta = max(0.05 * span, 20 * field.resolution / scale)
    else:
        delta = max(0.1 * abs(value), 1.0)
    if isinstance(value, int):
        delta = max(1, round(delta))
    if hi is not None and value + delta > hi:
        return value - delta
    return value + delta


def _warm_up(rig: Rig) -> int:
    return int(rig.desc.conformance.get("polls", 12))


def _did_nothing(knob: str, what: str) -> tuple[str, str]:
    return (
        "FAIL",
        f"the simulator's {knob} switch changes nothing it sends ({what}): "
        "the check would pass for nothing; make the switch act",
    )


def check_reads(rig: Rig) -> tuple[str, str]:
    rig.step(_warm_up(rig))
    means = rig.means()
    expect = rig.desc.conformance.get("expect") or {  # published = driver value x scale
        k: [v * rig.desc.fields[k].scale, max(2 * rig.desc.fields[k].resolution, 1e-6)]
        for k, v in rig.values.items()
        if k in rig.desc.fields
    }
    if not means:
        why = f"; last error {rig.errors[-1]!r}" if rig.errors else ""
        return "FAIL", f"no value reached the window in {_warm_up(rig)} polls{why}"
    for field, (want, tol) in expect.items():
        got = means.get(field)
        if got is None:
            return "FAIL", f"field {field!r} never delivered"
        if abs(got - want) > tol:
            return "FAIL", f"{field}: read {got:.4g}, simulator set {want:.4g} (tolerance {tol})"
    return "pass", ", ".join(f"{k}={means[k]:.4g}" for k in expect)


def _knob(rig: Rig, *names: str) -> str | None:
    return next((n for n in names if hasattr(rig.sim, n)), None)


def check_checksum(rig: Rig) -> tuple[str, str]:
    knob = _knob(rig, "corrupt_next", "corrupt_crc_next")
    if knob is None:
        return "n/a", "the protocol/simulator has no checksum to corrupt"
    rig.step(_warm_up(rig))
    before = rig.health.counters.get(f"{rig.desc.model}.checksum_errors", 0)
    rig.fresh_window()
    setattr(rig.sim, knob, True)  # its effect is the ChecksumError counted below
    rig.step(3)
    after = rig.health.counters.get(f"{rig.desc.model}.checksum_errors", 0)
    if after <= before:
        return "FAIL", "a frame with a wrong checksum was not refused (no ChecksumError)"
    rig.fresh_window()
    rig.step(_warm_up(rig))
    if not rig.means():
        return "FAIL", "no recovery after the bad checksum"
    return "pass", "refused with ChecksumError, next frame read"


def _frame_fault(rig: Rig, knob: str, what: str) -> tuple[str, str]:
    if not hasattr(rig.sim, knob):
        return "n/a", f"not a framed serial protocol (no {knob} switch)"
    rig.follow()
    rig.step(_warm_up(rig))
    marks = rig.marks()
    setattr(rig.sim, knob, True)
    rig.step(3)
    if not rig.switch_changed(marks):
        return _did_nothing(knob, f"3 polls sent the same as without a {what} frame")
    rig.unfollow()
    rig.fresh_window()
    rig.step(_warm_up(rig))
    if not rig.means():
        return "FAIL", f"no good frame read after a {what} frame"
    return "pass", f"{what} frame survived, next frame read"


def check_truncated(rig: Rig) -> tuple[str, str]:
    return _frame_fault(rig, "truncate_next", "truncated")


def check_misaligned(rig: Rig) -> tuple[str, str]:
    return _frame_fault(rig, "misalign", "misaligned")


def check_nack(rig: Rig) -> tuple[str, str]:
    if not isinstance(rig.bus, SimI2C):
        return "n/a", "not an I2C device"
    rig.step(_warm_up(rig))
    rig.bus.unplug(rig.address)
    rig.errors.clear()
    rig.step(2)
    if not any(isinstance(e, NoDevice) for e in rig.errors):
        got = [type(e).__name__ for e in rig.errors] or "nothing"
        return "FAIL", f"a NACKing device should raise NoDevice; got {got}"
    rig.bus.plug(rig.address)
    return "pass", "NoDevice raised"


def check_timeout(rig: Rig) -> tuple[str, str]:
    """Every bus: no call overruns the time limit and five polls take milliseconds. A
    serial device also goes silent (no error, no bytes): read() must return at once."""
    rig.step(_warm_up(rig))
    silent = isinstance(rig.bus, LoopbackUART)
    if silent:
        rig.bus.connected = False
    t0 = time.perf_counter()
    rig.step(5)
    took = time.perf_counter() - t0
    if silent:
        rig.bus.connected = True
    what = "5 reads of a silent device" if silent else "5 polls"
    if took > SLOW_S:
        return "FAIL", f"timeout (blocks): {what} took {took:.2f} s: the driver waits"
    return "pass", f"{what} returned in {took * 1000:.1f} ms"


def check_stuck(rig: Rig) -> tuple[str, str]:
    if not hasattr(rig.sim, "stuck"):
        return "n/a", "simulator has no stuck switch"
    rig.follow()
    rig.step(_warm_up(rig))
    rig.sim.stuck = True
    rig.step(2)
    if not rig.perturb():
        rig.unfollow()
        return "n/a", "the conformance source has no number to change, so stuck cannot show"
    marks = rig.marks()
    rig.step(5)
    if not rig.switch_changed(marks):
        return _did_nothing("stuck", "with the source changed it sent what a live chip sends")
    rig.unfollow()
    limits = [f.stuck_after for f in rig.desc.fields.values() if f.stuck_after]
    if not limits:
        return "pass", "stuck switch freezes what it sends; no field declares stuck_after"
    polls = max(limits) + _warm_up(rig) + 5  # averaging drivers need their window flushed
    rig.step(polls)
    if f"{rig.desc.model}_stuck" not in rig.health.alarms:
        return "FAIL", f"a frozen value was not flagged after {polls} polls"
    return "pass", f"switch freezes it; alarm {rig.desc.model}_stuck after {max(limits)} repeats"


def check_out_of_range(rig: Rig) -> tuple[str, str]:
    if not hasattr(rig.sim, "out_of_range"):
        return "n/a", "simulator has no out_of_range switch"
    rig.follow()
    rig.step(_warm_up(rig))
    rig.fresh_window()
    marks = rig.marks()
    rig.sim.out_of_range = True
    rig.step(5)
    if not rig.switch_changed(marks):
        return _did_nothing("out_of_range", "5 polls sent the same as in range")
    rig.unfollow()
    for (_, field), st in rig.window.series.items():
        spec = rig.desc.fields[field]
        if st.count and not (spec.plausible(st.lo) and spec.plausible(st.hi)):
            return "FAIL", f"{field} outside [{spec.min}, {spec.max}] reached the window"
    return "pass", "no out-of-range value reached the window"


def check_replug(rig: Rig) -> tuple[str, str]:
    bridge = not isinstance(rig.bus, (SimI2C, LoopbackUART))
    if bridge and not hasattr(rig.sim, "no_reply"):
        return "n/a", "bridge simulator cannot be unplugged"
    if bridge:
        rig.follow()
    rig.step(_warm_up(rig))
    if isinstance(rig.bus, SimI2C):
        rig.bus.unplug(rig.address)
        rig.step(3)
        rig.bus.plug(rig.address)
    elif isinstance(rig.bus, LoopbackUART):
        rig.bus.connected = False
        rig.step(3)
        rig.bus.connected = True
    else:
        marks = rig.marks()
        rig.sim.no_reply = True
        rig.step(3)
        if not rig.switch_changed(marks):
            return _did_nothing("no_reply", "3 polls sent the same as a bridge that replies")
        rig.unfollow()
        rig.sim.no_reply = False
    rig.fresh_window()
    rig.step(_warm_up(rig) + 3)
    if not rig.means():
        return "FAIL", "no readings after the device came back"
    return "pass", "reading again after replug"


CHECKS: dict[str, Callable[[Rig], tuple[str, str]]] = {
    "reads value": check_reads,
    "wrong checksum": check_checksum,
    "truncated frame": check_truncated,
    "misaligned frame": check_misaligned,
    "NACK": check_nack,
    "timeout": check_timeout,
    "stuck value": check_stuck,
    "out of range": check_out_of_range,
    "unplug/replug": check_replug,
}


def run(
    desc: SensorDescriptor,
    driver_cls: type | None = None,
    time_limit_s: float = TIME_LIMIT_S,
    rows: tuple[str, ...] = ROWS,
) -> list[tuple[str, str, str]]:
    """(row, verdict, reason) for every check (or those of ``rows``), each on a fresh rig.

    Raises ``ShadowedDriver`` when ``driver_cls`` is not given and an installed entry
    point would run instead of the driver the descriptor names."""
    if driver_cls is None:
        shadow = driver_shadow(desc)
        if shadow:
            raise ShadowedDriver(shadow)
    out = []
    for name, check in CHECKS.items():
        if name not in rows:
            continue
        rig = None
        try:
            rig = Rig(desc, driver_cls, time_limit_s)
            verdict, reason = check(rig)
        except Blocked as exc:
            verdict, reason = "FAIL", f"timeout (blocks): {exc}; a driver must never wait"
        except Exception as exc:  # a check that crashes is a failing driver, not a crash
            verdict, reason = "FAIL", f"crashed: {type(exc).__name__}: {exc}"
        finally:
            if rig is not None:
                rig.close()
        out.append((name, verdict, reason))
    return out


def table(model: str, rows: list[tuple[str, str, str]]) -> str:
    lines = [f"{model}", f"  {'check':<17} {'result':<6} reason", "  " + "-" * 70]
    lines += [f"  {r:<17} {v:<6} {why}" for r, v, why in rows]
    return "\n".join(lines)


def _importable(desc: SensorDescriptor) -> str | None:
    """Why the driver or simulator of ``desc`` cannot be loaded, or None."""
    try:
        driver_class(desc)
    except Exception as exc:
        return f"cannot load its driver {desc.driver!r} ({type(exc).__name__}: {exc})"
    if not desc.simulator:
        return f'no "simulator" in {desc.source}: conformance runs the driver against one'
    try:
        _load(desc.simulator)
    except Exception as exc:
        return f"cannot load its simulator {desc.simulator!r} ({type(exc).__name__}: {exc})"
    return None


def main(
    models: list[str],
    descriptor: Path | None,
    as_json: bool = False,
    time_limit_s: float = TIME_LIMIT_S,
) -> int:
    if descriptor:
        try:
            data = json.loads(descriptor.read_text())
            descs = {data["model"]: SensorDescriptor(data, str(descriptor))}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            why = exc.args[0] if isinstance(exc, DescriptorError) else f"{exc}"
            print(f"pole-sim conformance: cannot read {descriptor}: {why}", file=sys.stderr)
            return 2
    else:
        try:
            every = load_all_sensors()
        except DescriptorError as exc:
            print(f"pole-sim conformance: {exc}", file=sys.stderr)
            return 2
        unknown = [m for m in models if m not in every]
        if unknown:
            print(f"unknown model(s) {unknown}; known: {', '.join(sorted(every))}")
            return 2
        descs = {m: every[m] for m in (models or sorted(every)) if every[m].simulator}
    failed = refused = 0
    report = {}
    for model, desc in descs.items():
        why = driver_shadow(desc)
        if why:
            why = f"refusing to test {model}: {why}"
        else:
            why = _importable(desc)
            why = why and (
                f"cannot test {model}: {why}. Install its package (pip install .) "
                "or put it on PYTHONPATH"
            )
        if why:
            refused += 1
            print(f"pole-sim conformance: {why}", file=sys.stderr)
            continue
        rows = run(desc, time_limit_s=time_limit_s)
        report[model] = rows
        failed += sum(v == "FAIL" for _, v, _ in rows)
        if not as_json:
            print(table(model, rows) + "\n")
    if as_json:
        print(
            json.dumps(
                {
                    m: [dict(zip(("check", "result", "reason"), r, strict=True)) for r in rows]
                    for m, rows in report.items()
                },
                indent=2,
            )
        )
    else:
        print(
            f"{len(report)} driver(s), {failed} failing check(s)"
            + (f", {refused} refused (see above)" if refused else "")
        )
    return 2 if refused else 1 if failed else 0

"""Driver conformance: any driver against its byte-exact simulator, with faults injected.

Runs the driver inside the daemon's own supervision (``edge.sensors.SensorRunner``:
restart with backoff, plausibility from the descriptor, stuck detection) on a
simulated bus, in simulated time, and checks one behaviour per row:

    reads value      the physical value set in the simulator comes back within tolerance
    wrong checksum   a frame/CRC with a bad checksum is refused (ChecksumError), then recovery
    truncated frame  a cut-off frame is survived, the next good frame is read
    misaligned frame garbage before a frame is skipped, the frame is read
    NACK             an I2C device that stops acknowledging raises NoDevice (no hang, no crash)
    timeout          a silent serial device: read() returns at once with nothing
    stuck value      a frozen value is flagged (alarm <sensor>_stuck) for fields that declare it
    out of range     no value outside the descriptor's range reaches the window
    unplug/replug    the sensor is restarted by the supervisor and reads again

A row is ``pass``, ``FAIL`` (with the reason) or ``n/a`` (why it does not apply).
Usage: ``pole-sim conformance [MODEL ...]`` or ``--descriptor my_sensor.json`` for a
driver that lives outside this repository (its ``driver``/``simulator`` entries, or
a ``lightpole.drivers`` entry point, name the classes).
"""

from __future__ import annotations

import importlib
import inspect
import json
import time
from collections.abc import Callable
from pathlib import Path

from edge.descriptors import SensorDescriptor, load_all_sensors
from edge.errors import NoDevice
from edge.health import Health
from edge.sensors import SensorRunner, driver_class
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


def _load(spec: str) -> type:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Rig:
    """One driver + simulator + supervisor on a simulated bus, in simulated time."""

    def __init__(self, desc: SensorDescriptor, driver_cls: type | None = None) -> None:
        self.desc = desc
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
        self.health = Health()
        self.window = Window(0, 3600)
        self.address = desc.default_address
        if desc.bus == "i2c":
            self.bus = SimI2C()
            self.bus.attach(self.address, self.sim)
        elif desc.bus == "uart":
            self.bus = LoopbackUART(self.sim, now=self.time.t)
        else:  # a bridge: the simulator is the bridge
            self.bus = self.sim
        cls = driver_cls or driver_class(desc)
        params = inspect.signature(cls).parameters
        opts: dict = {}
        if "clock" in params:  # drivers that time things take a ms clock and sleep_ms
            opts["clock"] = lambda: int(self.time.t * 1000)
        if "sleep_ms" in params:
            opts["sleep_ms"] = self._sleep_ms

        self.raw: dict[str, list[float]] = {}  # what the driver returned, field by field

        def make() -> object:
            if desc.bus == "i2c":
                drv = cls(self.bus, address=self.address, **opts)
            else:
                drv = cls(self.bus, **opts)
            read = drv.read

            def recording_read() -> dict | None:
                values = read()
                for k, v in (values or {}).items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        self.raw.setdefault(k, []).append(v)
                return values

            drv.read = recording_read
            return drv

        self.runner = SensorRunner(desc.model, desc, make, self.health, lambda: self.window)
        self.errors: list[Exception] = []

    def _sleep_ms(self, ms: float) -> None:
        self.time.t += ms / 1000

    def step(self, n: int = 1) -> None:
        """``n`` polls, as the daemon's loop does them, with time advancing between."""
        for _ in range(n):
            self.time.t += self.desc.poll_s
            if isinstance(self.bus, LoopbackUART):
                self.bus.advance(self.desc.poll_s)
            try:
                self.runner.poll_once()
            except Exception as exc:  # what SensorRunner.run does: restart later
                self.errors.append(exc)
                self.runner.driver = None

    def fresh_window(self) -> None:
        self.window = Window(0, 3600)
        self.raw = {}

    def means(self) -> dict[str, float]:
        """Window means; for fields the window does not take (count, personal: they
        leave, if at all, through the privacy gate) the mean of what the driver returned."""
        out = {k: sum(v) / len(v) for k, v in self.raw.items() if v}
        out.update({k[1]: s.mean() for k, s in self.window.series.items() if s.count})
        return out


def _warm_up(rig: Rig) -> int:
    return int(rig.desc.conformance.get("polls", 12))


def check_reads(rig: Rig) -> tuple[str, str]:
    rig.step(_warm_up(rig))
    means = rig.means()
    expect = rig.desc.conformance.get("expect") or {  # published = driver value x scale
        k: [v * rig.desc.fields[k].scale, max(2 * rig.desc.fields[k].resolution, 1e-6)]
        for k, v in rig.values.items()
        if k in rig.desc.fields and k in means or k in rig.desc.fields
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
    setattr(rig.sim, knob, True)
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
        return "n/a", f"not a framed serial protocol (no {knob} knob)"
    rig.step(_warm_up(rig))
    setattr(rig.sim, knob, True)
    rig.step(3)
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
    if not isinstance(rig.bus, LoopbackUART):
        return "n/a", "only serial devices can go silent without an error"
    rig.step(_warm_up(rig))
    rig.bus.connected = False
    t0 = time.perf_counter()
    rig.step(5)
    took = time.perf_counter() - t0
    rig.bus.connected = True
    if took > 0.5:
        return "FAIL", f"5 reads of a silent device took {took:.2f} s: the driver blocks"
    return "pass", f"silent device: 5 reads returned in {took * 1000:.1f} ms"


def check_stuck(rig: Rig) -> tuple[str, str]:
    limits = [f.stuck_after for f in rig.desc.fields.values() if f.stuck_after]
    if not limits:
        return "n/a", "no field declares stuck_after (exact repeats are plausible for it)"
    if not hasattr(rig.sim, "stuck"):
        return "n/a", "simulator has no stuck knob"
    rig.step(_warm_up(rig))
    rig.sim.stuck = True
    polls = max(limits) + _warm_up(rig) + 5  # averaging drivers need their window flushed
    rig.step(polls)
    if f"{rig.desc.model}_stuck" not in rig.health.alarms:
        return "FAIL", f"a frozen value was not flagged after {polls} polls"
    return "pass", f"alarm {rig.desc.model}_stuck after {max(limits)} identical samples"


def check_out_of_range(rig: Rig) -> tuple[str, str]:
    if not hasattr(rig.sim, "out_of_range"):
        return "n/a", "simulator has no out_of_range knob"
    rig.step(_warm_up(rig))
    rig.fresh_window()
    rig.sim.out_of_range = True
    rig.step(5)
    for (_, field), st in rig.window.series.items():
        spec = rig.desc.fields[field]
        if st.count and not (spec.plausible(st.lo) and spec.plausible(st.hi)):
            return "FAIL", f"{field} outside [{spec.min}, {spec.max}] reached the window"
    return "pass", "no out-of-range value reached the window"


def check_replug(rig: Rig) -> tuple[str, str]:
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
        if not hasattr(rig.sim, "no_reply"):
            return "n/a", "bridge simulator cannot be unplugged"
        rig.sim.no_reply = True
        rig.step(3)
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


def run(desc: SensorDescriptor, driver_cls: type | None = None) -> list[tuple[str, str, str]]:
    """(row, verdict, reason) for every check, each on a fresh rig."""
    out = []
    for name, check in CHECKS.items():
        try:
            verdict, reason = check(Rig(desc, driver_cls))
        except Exception as exc:  # a check that crashes is a failing driver, not a crash
            verdict, reason = "FAIL", f"crashed: {type(exc).__name__}: {exc}"
        out.append((name, verdict, reason))
    return out


def table(model: str, rows: list[tuple[str, str, str]]) -> str:
    lines = [f"{model}", f"  {'check':<17} {'result':<6} reason", "  " + "-" * 70]
    lines += [f"  {r:<17} {v:<6} {why}" for r, v, why in rows]
    return "\n".join(lines)


def main(models: list[str], descriptor: Path | None, as_json: bool = False) -> int:
    if descriptor:
        data = json.loads(descriptor.read_text())
        descs = {data["model"]: SensorDescriptor(data, str(descriptor))}
    else:
        every = load_all_sensors()
        unknown = [m for m in models if m not in every]
        if unknown:
            print(f"unknown model(s) {unknown}; known: {', '.join(sorted(every))}")
            return 2
        descs = {m: every[m] for m in (models or sorted(every)) if every[m].simulator}
    failed = 0
    report = {}
    for model, desc in descs.items():
        rows = run(desc)
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
        print(f"{len(descs)} driver(s), {failed} failing check(s)")
    return 1 if failed else 0

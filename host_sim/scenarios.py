"""The scenario catalogue: situations that matter to the city, replayed on simulated poles.

Each scenario drives a small fleet (the real edge pipeline per pole: drivers, windows,
privacy gate, signing, spool, its own MQTT connection) against a real broker, states
what the city should observe, and checks it **at the verifier**: only signed messages
that verified against the exported trust list count, never a peek into the simulator.
``run`` returns report rows (scenario, expectation, observed, pass); ``format_table``
prints them. ``pole-sim scenario`` runs the catalogue; tests/test_scenarios.py runs it
in CI. Every scenario can run as a *control* (``control=True``): the same timeline
without its fault, whose expectations must then fail, which shows that they can.

Time is real or accelerated: ``SimClock`` (host_sim.simtime) runs the world and the
poles' wall clock ``rate`` times faster from a chosen local time (so dusk is seconds
away) and can jump (a day passes in an instant); the daemons scale their window, bin
and health sleeps by that rate, so packs are stamped in simulated time. Sensor
polling, debounce timers and MQTT stay in real time.

Scenarios wait for what they expect with a deadline instead of sleeping fixed times:
a passing run ends as soon as the verifier has seen enough, a failing one at the
deadline. The whole catalogue takes about 70 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from host_sim.broker import Mosquitto, free_port
from host_sim.pole import BME280_ADDR, SimPole, ensure_identity
from host_sim.simtime import UTC_OFFSET_H, SimClock, local_epoch
from host_sim.world import World
from provisioning.receiver import run_receiver
from provisioning.trustlist import TrustList, load_keys
from provisioning.verifier import Verdict, Verifier

__all__ = [
    "CATALOGUE",
    "Row",
    "Seen",
    "SimClock",
    "Stage",
    "Uplink",
    "format_table",
    "local_epoch",
    "run",
    "scenario",
]

ROOT = Path(__file__).resolve().parent.parent


@dataclass(slots=True)
class Row:
    """One line of the report: what the city should observe, and what it did."""

    scenario: str
    expectation: str
    observed: str
    ok: bool


@dataclass(slots=True)
class Seen:
    """One message as the verifier judged it: real arrival (monotonic), topic, verdict, and
    a digest of its bytes (so a cti used for two different messages is caught)."""

    real: float
    topic: str
    v: Verdict
    digest: bytes


class Uplink:
    """A pole's network path to the broker, as a TCP relay that a scenario can cut and
    restore (a dead modem, a dug-up fibre) while the broker and the verifier stay up."""

    def __init__(self, broker_url: str) -> None:
        parts = urlsplit(broker_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 1883)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def up(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def down(self) -> None:
        """Refuse new connections and tear down the open ones, as a dead link does."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._conns):
            w.transport.abort()
        self._conns.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._conns |= {writer, up_w}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self._conns -= {writer, up_w}


class Stage:
    """A few simulated poles and the city's verifier, in one event loop.

    Poles listed in ``processes`` run as their own OS process (``pole-sim pole``, sharing
    the simulated clock), so that ``power_off(i, hard=True)`` can kill them with SIGKILL:
    a power cut gives no goodbye, and only a real process death shows what survives it.
    The others run in this event loop, where scenarios can turn their knobs directly.
    """

    live: ClassVar[set[Stage]] = set()  # started, not yet stopped: ``run`` cleans up after a crash

    def __init__(
        self,
        work: Path,
        broker_url: str,
        n: int,
        sensors: str = "full",
        window_s: int = 2,
        clock: SimClock | None = None,
        seed: int = 1,
        overrides: dict | None = None,
        health_s: int | None = None,
        processes: tuple[int, ...] = (),
    ) -> None:
        self.work = work
        self.broker_url = broker_url
        self.prefix = "sc" + os.urandom(3).hex()  # retained messages of other runs: not ours
        self.clock = clock
        self.seed = seed
        self.window_s = window_s
        self.health_s = health_s or window_s * 2
        self.sensors = sensors
        self.overrides = overrides
        self.world = World(seed=seed, clock=clock.wall if clock else time.time)
        self.ids = [f"nl-sc-{i + 1:04d}" for i in range(n)]
        # What each pole experiences; the scenarios turn these knobs (tilt, lamp, ...).
        # A process pole has its own copy of the world (same seed and clock): its knobs
        # here only tell the scenario what that pole experiences (lamp_commanded, powered).
        self.pw = [self.world.pole(i) for i in range(n)]
        self.processes = set(processes)
        # Per pole, e.g. through an Uplink: read when a process pole is powered on, and when
        # an in-process pole is built (here, and at a power-on after a power-off).
        self.pole_broker = [broker_url] * n
        self.poles: list[SimPole | None] = [None] * n
        trust = TrustList(work / "trust.sqlite")
        for i, pid in enumerate(self.ids):
            if i in self.processes:
                key = ensure_identity(work / pid, pid).public_key
            else:
                sp = self.poles[i] = self._pole(i)
                key = sp.identity.public_key
            trust.add(pid, key)
        trust.export_file(work / "trust.json")
        trust.close()
        self.verifier = Verifier(load_keys(work / "trust.json"), topic_prefix=self.prefix)
        self.seen: list[Seen] = []
        self._digest = b""
        self._stops: list[asyncio.Event | None] = [None] * n
        self._tasks: list[asyncio.Task | None] = [None] * n
        self._procs: list[asyncio.subprocess.Process | None] = [None] * n
        self._recv_stop = asyncio.Event()
        self._recv: asyncio.Task | None = None

    def _pole(self, i: int) -> SimPole:
        return SimPole(
            self.ids[i],
            self.work / self.ids[i],
            self.pole_broker[i],
            self.pw[i],
            window_s=self.window_s,
            health_s=self.health_s,
            clock=self.clock.edge_clock() if self.clock else None,
            topic_prefix=self.prefix,
            sensors=self.sensors,
            config_overrides=self.overrides,
        )

    def _check(self, topic: str, payload: bytes) -> Verdict:
        self._digest = hashlib.blake2b(payload, digest_size=16).digest()
        return self.verifier.check(topic, payload)

    def _on(self, topic: str, v: Verdict) -> None:
        self.seen.append(Seen(time.monotonic(), topic, v, self._digest))

    async def start(self, poles: list[int] | None = None) -> None:
        """Connect the verifier (a persistent session), then power the poles on."""
        ready = asyncio.Event()
        checker = _Checked(self.verifier, self._check)
        self._recv = asyncio.create_task(
            run_receiver(
                self.broker_url,
                checker,  # type: ignore[arg-type]
                self._on,
                self._recv_stop,
                ready=ready,
                client_id="verifier-" + self.prefix,
            )
        )
        await asyncio.wait_for(ready.wait(), 15)
        Stage.live.add(self)
        for i in range(len(self.ids)) if poles is None else poles:
            await self.power_on(i)

    def running(self, i: int) -> bool:
        return self._tasks[i] is not None or self._procs[i] is not None

    async def power_on(self, i: int) -> None:
        """Start pole i's daemon; after a power-off a new daemon on the same state (a new
        boot). Does nothing if it runs."""
        if self.running(i):
            return
        if i in self.processes:
            with open(self.work / f"{self.ids[i]}.log", "ab") as log:  # its complaints
                self._procs[i] = await asyncio.create_subprocess_exec(
                    *self._command(i), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log
                )
            return
        sp = self.poles[i] or self._pole(i)
        self.poles[i] = sp
        stop = self._stops[i] = asyncio.Event()
        self._tasks[i] = asyncio.create_task(sp.run(stop))

    def _command(self, i: int) -> list[str]:
        cmd = [
            sys.executable, "-m", "host_sim.cli", "pole", "--pole-id", self.ids[i],
            "--state-dir", str(self.work / self.ids[i]), "--broker", self.pole_broker[i],
            "--window", str(self.window_s), "--health", str(self.health_s),
            "--prefix", self.prefix, "--sensors", self.sensors, "--seed", str(self.seed),
            "--index", str(i),
        ]  # fmt: skip
        if self.clock is not None:
            # The simulated clock as (time at a monotonic instant, rate): CLOCK_MONOTONIC
            # is the same in every process, so the pole keeps our simulated time.
            cmd += [
                "--sim-start", repr(self.clock.start), "--sim-ref", repr(self.clock.m0),
                "--rate", repr(self.clock.rate),
            ]  # fmt: skip
        return cmd

    async def power_off(self, i: int, hard: bool = False) -> None:
        """Stop pole i: cleanly (its daemon says goodbye), or ``hard`` (SIGKILL: a power
        cut; only for process poles)."""
        proc = self._procs[i]
        if proc is not None:
            proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            self._procs[i] = None
            return
        if hard:
            raise ValueError("a hard power-off needs a process pole (Stage(processes=...))")
        stop, task = self._stops[i], self._tasks[i]
        if stop is None or task is None:
            return
        stop.set()
        await _finish(task)
        sp = self.poles[i]
        if sp is not None:
            for p in sp.ptys:
                p.close()
        self._tasks[i] = self._stops[i] = None
        self.poles[i] = None  # its spool is closed; a new daemon comes at power-on

    async def until(self, cond: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``cond()`` (a question about what the verifier saw) or the deadline."""
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    async def stop(self, settle: float = 2.0) -> None:
        """Power every pole off, let the last messages arrive, stop the verifier."""
        for i in range(len(self.ids)):
            await self.power_off(i)
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:  # quiet for 0.4 s: nothing more in flight
            if not self.seen or time.monotonic() - self.seen[-1].real > 0.4:
                break
            await asyncio.sleep(0.1)
        self._recv_stop.set()
        if self._recv is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._recv, 10)
        Stage.live.discard(self)

    # -- what the verifier saw ------------------------------------------------------------
    def accepted(self, pole: int | None = None, kind: str | None = None) -> list[Seen]:
        pid = None if pole is None else self.ids[pole]
        return [
            s
            for s in self.seen
            if s.v.status == "accepted"
            and (pid is None or s.v.pole_id == pid)
            and (kind is None or s.v.kind == kind)
        ]

    def rejected(self) -> list[Seen]:
        return [s for s in self.seen if s.v.status == "rejected"]

    def series(self, pole: int, suffix: str, kind: str = "data") -> list[tuple[float, object]]:
        """(pack time, value) of every verified record whose name ends in ``suffix``."""
        out = []
        for s in self.accepted(pole, kind):
            for r in s.v.records:
                if r.name.endswith(suffix):
                    out.append((r.time, r.value))
        return out

    def stats(self, pole: int, series: str) -> dict[float, dict[str, object]]:
        """Window end -> {"mean", "min", "max", "count"} of one series, e.g. "ina219/current"."""
        out: dict[float, dict[str, object]] = {}
        for stat in ("mean", "min", "max", "count"):
            for t, v in self.series(pole, f"/{series}/{stat}"):
                out.setdefault(t, {})[stat] = v
        return out

    def window_ends(self, pole: int, boot: int | None = None) -> list[int]:
        """Ends of the verified data windows of a pole (of one boot: cti >> 32)."""
        return sorted(
            int(s.v.records[0].time)
            for s in self.accepted(pole, "data")
            if boot is None or s.v.cti >> 32 == boot
        )

    def boots(self, pole: int) -> list[int]:
        """Boot numbers of the pole's verified data windows."""
        return sorted({s.v.cti >> 32 for s in self.accepted(pole, "data")})

    def births(self, pole: int) -> list[int]:
        """Boot numbers announced by the pole's verified birth messages."""
        return sorted(
            {
                int(r.value)
                for s in self.accepted(pole, "birth")
                for r in s.v.records
                if r.name.endswith("/boot")
            }
        )

    def alarm_at(self, pole: int, name: str, after: float) -> float | None:
        """Real arrival time of the first health message after ``after`` with the alarm."""
        for s in self.accepted(pole, "health"):
            if s.real >= after and any(r.name.endswith("/alarm/" + name) for r in s.v.records):
                return s.real
        return None

    def reused_ctis(self) -> int:
        """Counters (per pole) that arrived on two different messages: never allowed. A QoS 1
        redelivery of the same bytes is fine (the verifier calls it a duplicate)."""
        bodies: dict[tuple[str, int], set[bytes]] = {}
        for s in self.seen:
            if s.v.status in ("accepted", "duplicate"):
                bodies.setdefault((s.v.pole_id, s.v.cti), set()).add(s.digest)
        return sum(len(b) > 1 for b in bodies.values())

    def integrity(self, name: str) -> Row:
        """The row every scenario ends with: all of it verified, no counter reused."""
        acc, rej, reused = len(self.accepted()), self.rejected(), self.reused_ctis()
        why = f" ({rej[0].v.reason})" if rej else ""
        return Row(
            name,
            "every message verifies against the trust list; no cti names two messages",
            f"{acc} accepted, {len(rej)} rejected{why}, {reused} ctis reused",
            acc > 0 and not rej and not reused,
        )


async def _finish(task: asyncio.Task, limit_s: float = 30.0) -> None:
    """Wait for a stopped daemon's task to end.

    On Python 3.11, ``asyncio.wait_for`` swallows a cancellation that arrives just as its
    inner future completes (CPython gh-86296, fixed in 3.12). A sensor task of the daemon
    (edge/sensors.py wraps every driver call in wait_for) then polls on after
    ``Pole.run`` cancelled it, and the daemon's shutdown waits for it forever. Tasks that
    were asked to cancel and are still running get asked again."""
    deadline = time.monotonic() + limit_s
    while not task.done():
        await asyncio.wait({task}, timeout=1.0)
        if task.done() or time.monotonic() > deadline:
            break
        for t in asyncio.all_tasks():
            if t is not task and not t.done() and t.cancelling():
                t.cancel()
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: a daemon that died is the scenario's to judge


class _Checked:
    """The verifier as the receiver sees it, with ``check`` routed through the stage (to
    keep a digest of each message's bytes); everything else is the verifier's own."""

    def __init__(self, verifier: Verifier, check: Callable[[str, bytes], Verdict]) -> None:
        self._verifier = verifier
        self.check = check

    def __getattr__(self, name: str) -> object:
        return getattr(self._verifier, name)


# A scenario: (work dir, broker URL, control) -> report rows. ``control=True`` runs it
# without its fault, to show that its expectations can fail (a control experiment).
Scenario = Callable[..., Awaitable[list[Row]]]
CATALOGUE: dict[str, tuple[str, Scenario]] = {}


def scenario(name: str, summary: str) -> Callable[[Scenario], Scenario]:
    """Register a scenario in the catalogue under ``name``."""

    def register(fn: Scenario) -> Scenario:
        CATALOGUE[name] = (summary, fn)
        return fn

    return register


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _hm(t: float, seconds: bool = False) -> str:
    """Local wall time of an epoch, as the world keeps it."""
    fmt = "%H:%M:%S" if seconds else "%H:%M"
    return time.strftime(fmt, time.gmtime(t + UTC_OFFSET_H * 3600)) if t else "-"


def _gaps(ends: list[int], step: int) -> list[int]:
    """Window ends missing between the first and the last one: the city's "lost"."""
    if not ends:
        return []
    return sorted(set(range(ends[0], ends[-1] + 1, step)) - set(ends))


# -- the catalogue ----------------------------------------------------------------------------
@scenario("day-night", "dawn and dusk at 300x: lamps switched; pole 3 on the switched circuit")
async def day_night(work: Path, broker: str, control: bool = False) -> list[Row]:
    """Lamps are switched at 07:30 and 17:00 local time. Poles 1-2 have permanent power;
    pole 3's controller hangs on the switched lighting circuit: it loses power at dawn
    (no goodbye: SIGKILL) and boots again at dusk. 5-minute windows, one a real second;
    the day between 07:40 and 16:50 passes in an instant."""
    w, d = 300, "2026-11-27"
    clock = SimClock(local_epoch(d, "07:15"), rate=w)
    st = Stage(work, broker, 3, window_s=w, clock=clock, health_s=2 * w, processes=(2,))
    dawn, dusk = local_epoch(d, "07:30"), local_epoch(d, "17:00")
    switched = st.pw[2]
    switched.switched_circuit = not control
    switches: list[tuple[bool, float]] = []  # (power on?, real time)

    async def circuit() -> None:  # the switched pole follows the lighting circuit
        while True:
            if switched.powered() and not st.running(2):
                switches.append((True, time.monotonic()))
                await st.power_on(2)
            elif not switched.powered() and st.running(2):
                switches.append((False, time.monotonic()))
                await st.power_off(2, hard=True)
            await asyncio.sleep(0.02)

    await st.start(poles=[0, 1])
    watcher = asyncio.create_task(circuit())
    try:
        await clock.until(local_epoch(d, "07:40"))
        clock.jump(local_epoch(d, "16:50"))
        await clock.until(dusk + 10 * 60)
        await st.until(lambda: len([t for t in st.window_ends(2) if t > dusk]) >= 2, 5)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    await st.stop()
    rows = []
    for p in (0, 1):
        night1, day, night2, wrong = [], [], [], []
        for t, s in sorted(st.stats(p, "ina219/current").items()):
            if not s.get("count"):
                continue  # a window without a sample (one sample a real second)
            mean, lo, hi = float(s["mean"]), float(s["min"]), float(s["max"])  # type: ignore[arg-type]
            night = t <= dawn or t > dusk
            (night1 if t <= dawn else night2 if t > dusk else day).append(mean)
            # The window ending at a switch may hold a sample from just after it (the
            # window closes a few ms late): judge it by its max (dawn) or min (dusk).
            if t == dawn:
                good = hi > 2.0
            elif t == dusk:
                good = lo < 0.1
            else:
                good = mean > 2.0 if night else mean < 0.1
            if not good:
                wrong.append(_hm(t))
        rows.append(
            Row(
                "day-night",
                f"pole {p + 1}: lamp current on until dawn 07:30, off by day, on from dusk "
                "17:00 (every 5-min window)",
                f"{_mean(night1):.2f} A / {_mean(day):.2f} A / {_mean(night2):.2f} A "
                f"({len(night1)}/{len(day)}/{len(night2)} windows)"
                + (f"; wrong at {', '.join(wrong)}" if wrong else ""),
                bool(night1 and day and night2) and not wrong,
            )
        )
    ends = st.window_ends(2)
    by_day = [t for t in ends if dawn < t <= dusk]
    cut = next((t for on, t in switches if not on), math.inf)
    back = next((t for on, t in switches if on and t > cut), math.inf)
    deaths = [s for s in st.accepted(2, "death") if cut <= s.real < back]
    rows.append(
        Row(
            "day-night",
            "pole 3 (switched): dark by day: its will (a verified death) at dawn, no window "
            "stamped between 07:30 and 17:00",
            f"windows {', '.join(_hm(t) for t in ends)}; {len(deaths)} death(s) by day",
            bool(ends) and not by_day and bool(deaths),
        )
    )
    boots, births = st.boots(2), st.births(2)
    first = st.window_ends(2, boots[0]) if boots else []
    second = st.window_ends(2, boots[-1]) if len(boots) > 1 else []
    rows.append(
        Row(
            "day-night",
            "pole 3: back at dusk as a new boot (verified birth); the windows of the night "
            "before all arrived (spool intact)",
            f"boots {boots}, births {births}; boot 1: {len(first)} windows to "
            f"{_hm(max(first, default=0))}, {len(_gaps(first, w))} missing; boot 2: "
            f"{len(second)} windows from {_hm(min(second, default=0))}",
            len(boots) == 2
            and boots[1] == boots[0] + 1
            and births == boots
            and len(first) >= 2
            and not _gaps(first, w)
            and max(first) >= dawn - w
            and len(second) >= 2
            and min(second) > dusk,
        )
    )
    rows.append(st.integrity("day-night"))
    return rows


@scenario("heat-wave", "the same afternoon hour a day later, 8 degrees hotter, on every pole")
async def heat_wave(work: Path, broker: str, control: bool = False) -> list[Row]:
    """14:00-14:03 on a July day, then (a jump) 14:00-14:04 the next day in a heat wave
    (World.heat_wave = 8): the same hour, so the day curve cancels. 60x, 1-min windows."""
    w = 60
    d1, d2 = "2026-07-14", "2026-07-15"
    clock = SimClock(local_epoch(d1, "13:59") + 30, rate=w)
    st = Stage(work, broker, 3, sensors="basic", window_s=w, clock=clock, health_s=10 * w)
    await st.start()
    t_cut = local_epoch(d1, "14:03")
    await clock.until(t_cut + w / 2)
    t_hot = local_epoch(d2, "14:00")
    if not control:
        st.world.heat_wave = 8.0
    clock.jump(t_hot)

    def temps(p: int) -> tuple[list[float], list[float]]:
        before, after = [], []
        for t, s in st.stats(p, "bme280/temperature").items():
            if not s.get("count"):
                continue
            if t <= t_cut:  # the window open at the jump holds both days: left out
                before.append(float(s["mean"]))  # type: ignore[arg-type]
            elif t > t_hot + w:
                after.append(float(s["mean"]))  # type: ignore[arg-type]
        return before, after

    await st.until(lambda: all(len(temps(p)[1]) >= 3 for p in range(3)), 10)
    await st.stop()
    rows = []
    for p in range(3):
        before, after = temps(p)
        rise = _mean(after) - _mean(before)
        rows.append(
            Row(
                "heat-wave",
                f"pole {p + 1}: mean temperature 14:00-14:04 is 8 +- 1 degC above the day before",
                f"{_mean(before):.2f} -> {_mean(after):.2f} degC ({rise:+.2f}; "
                f"{len(before)}/{len(after)} windows)",
                len(before) >= 3 and len(after) >= 3 and abs(rise - 8.0) <= 1.0,
            )
        )
    rows.append(st.integrity("heat-wave"))
    return rows


@scenario("crowd", "a cycling race passes poles 1-2: their bicycle bins rise, pole 3's do not")
async def crowd(work: Path, broker: str, control: bool = False) -> list[Row]:
    """Counts leave only as privacy bins (clock-aligned, min 60 s, small counts suppressed).
    At 20x a 60 s bin lasts 3 real seconds; k = 3 so a short run can see numbers. One
    quiet bin (11:00-11:01), then the peloton (six riders a second) for two bins."""
    k, w = 3, 60
    d = "2026-05-17"
    race = local_epoch(d, "11:01")
    clock = SimClock(race - 130, rate=20)  # the first bin (merged if short) ends by 11:01
    privacy = {"bin_s": w, "k": k, "round_to": 1}
    st = Stage(
        work, broker, 3, window_s=w, clock=clock, overrides={"privacy": privacy}, health_s=10 * w
    )
    route = (0, 1)
    await st.start()
    await clock.until(race)
    if not control:
        for p in route:
            sp = st.poles[p]
            assert sp is not None
            sp.street.rates = (6 / 60, 360 / 60)  # the peloton: six bicycles a second
            sp.street.spacing_s = 0.25
    end = race + 2 * w

    def bins(p: int) -> list[tuple[float, object]]:
        """(bin end, published value): a suppressed bin shows as "<k"."""
        counts = dict(st.series(p, "/ld2450/bicycles/count", kind="counts"))
        hidden = dict(st.series(p, "/ld2450/bicycles/suppressed", kind="counts"))
        return sorted((t, f"<{k}" if hidden.get(t) else v) for t, v in counts.items())

    await clock.until(end)
    await st.until(lambda: all(any(t >= end for t, _ in bins(p)) for p in range(3)), 5)
    await st.stop()
    rows = []
    for p in range(3):
        b = bins(p)
        quiet = [v for t, v in b if t == race]  # the bin 11:00-11:01
        racing = [v for t, v in b if race < t <= end]
        on = p in route
        if on:
            ok = quiet == [f"<{k}"] and len(racing) == 2
            ok = ok and all(isinstance(v, int) and v >= k for v in racing)
            want = f'"<{k}" before the race, {k} or more in both race bins'
        else:
            ok = quiet == [f"<{k}"] and len(racing) == 2 and all(v == f"<{k}" for v in racing)
            want = f'"<{k}" throughout'
        rows.append(
            Row(
                "crowd",
                f"pole {p + 1} ({'on' if on else 'off'} the route): bicycle bins {want}",
                "bins " + ", ".join(f"{_hm(t)} {v}" for t, v in b),
                ok,
            )
        )
    leaks, shapes = [], []
    for p in range(3):
        for s in st.accepted(p, "data"):
            leaks += [r.name for r in s.v.records if "/ld2450/" in r.name]
        for s in st.accepted(p, "counts"):
            hidden = {
                r.name[: -len("suppressed")]: r.value
                for r in s.v.records
                if r.name.endswith("/suppressed")
            }
            for r in s.v.records:
                # A bin covers w seconds; the first after a start may cover up to w + 60
                # (a short first bin is merged into the next, never published alone).
                if r.name.endswith("/bin") and not w <= r.value <= w + 60:
                    shapes.append(f"bin of {r.value} s")
                elif r.name.endswith("/count") and not (
                    isinstance(r.value, int)
                    and (r.value >= k or (r.value == 0 and hidden.get(r.name[: -len("count")])))
                ):
                    shapes.append(f"{r.name.split('/', 1)[1]} = {r.value}")
    n_bins = sum(len(st.accepted(p, "counts")) for p in range(3))
    rows.append(
        Row(
            "crowd",
            f"counts leave only as {w} s bins, each >= {k} or suppressed; none in a data window",
            f"{n_bins} bins, {len(shapes)} malformed, {len(leaks)} counts in data windows",
            n_bins > 0 and not shapes and not leaks,
        )
    )
    rows.append(st.integrity("crowd"))
    return rows


@scenario("pole-knocked", "a truck hits pole 1: pole_tilted within one window, not on pole 2")
async def pole_knocked(work: Path, broker: str, control: bool = False) -> list[Row]:
    """The LIS3DH averages 5 s of samples (wind sway), so the scenario waits until both
    poles report tilt before the truck comes; then the alarm must arrive in one window."""
    w = 3
    st = Stage(work, broker, 2, window_s=w, health_s=1)  # health each second: pole 2 speaks
    await st.start()

    def tilting(p: int) -> bool:
        return any(s.get("count") for s in st.stats(p, "lis3dh/tilt").values())

    await st.until(lambda: tilting(0) and tilting(1), 15)
    hit = time.monotonic()
    if not control:
        st.pw[0].tilt_deg = 14.0

    def seen_enough() -> bool:  # pole 1 alarmed, and pole 2 reported health since
        at = st.alarm_at(0, "pole_tilted", hit)
        return at is not None and any(s.real > at for s in st.accepted(1, "health"))

    await st.until(seen_enough, w + 2)  # the deadline, and a little
    await st.stop()
    at = st.alarm_at(0, "pole_tilted", hit)
    early = st.alarm_at(0, "pole_tilted", 0)
    other = st.alarm_at(1, "pole_tilted", 0)
    healths = len([s for s in st.accepted(1, "health") if s.real > hit])
    return [
        Row(
            "pole-knocked",
            f"pole 1: pole_tilted alarm in the health stream within one window ({w} s) of "
            "the impact, none before",
            (f"after {at - hit:.1f} s" if at else "no alarm")
            + ("" if early == at else "; an alarm before the impact"),
            at is not None and at - hit <= w and early == at,
        ),
        Row(
            "pole-knocked",
            "pole 2 (standing): no tilt alarm",
            f"{'none' if other is None else 'alarm'} in {healths} health messages since",
            other is None and healths > 0,
        ),
        st.integrity("pole-knocked"),
    ]


@scenario("lamp-fails", "pole 2's lamp fails at night: lamp_failed within a window")
async def lamp_fails(work: Path, broker: str, control: bool = False) -> list[Row]:
    """At night (lamps commanded on) the lamp monitor has settled on "burning"; then pole
    2's lamp fails. The monitor debounces 2 s (in real time), so one window is 5 s here."""
    w = 5
    st = Stage(work, broker, 2, window_s=w, health_s=1)  # health each second: pole 1 speaks
    for p in (0, 1):
        st.pw[p].lamp_override = True  # night: the lamps are commanded on
    await st.start()
    t0 = time.monotonic()

    def burning(p: int) -> bool:
        means = [s["mean"] for s in st.stats(p, "ina219/current").values() if s.get("count")]
        return any(float(m) > 2.0 for m in means)  # type: ignore[arg-type]

    # Settle (2 s) and debounce (2 s) after the first sample: the monitor says burning.
    await st.until(lambda: burning(0) and burning(1) and time.monotonic() - t0 > 5, 15)
    fail = time.monotonic()
    if not control:
        st.pw[1].lamp_failed = True

    def seen_enough() -> bool:  # pole 2 alarmed, and pole 1 reported health since
        at = st.alarm_at(1, "lamp_failed", fail)
        return at is not None and any(s.real > at for s in st.accepted(0, "health"))

    await st.until(seen_enough, w + 2)  # the deadline, and a little
    await st.stop()
    at = st.alarm_at(1, "lamp_failed", fail)
    early = st.alarm_at(1, "lamp_failed", 0)
    other = [
        n
        for n in ("lamp_failed", "lamp_degraded", "lamp_day_burner")
        if st.alarm_at(0, n, 0) is not None
    ]
    healths = len([s for s in st.accepted(0, "health") if s.real > fail])
    return [
        Row(
            "lamp-fails",
            f"pole 2: lamp_failed in the health stream within one window ({w} s, with the "
            "2 s debounce), none before",
            (f"after {at - fail:.1f} s" if at else "no alarm")
            + ("" if early == at else "; an alarm before the failure"),
            at is not None and at - fail <= w and early == at,
        ),
        Row(
            "lamp-fails",
            "pole 1 (burning): no lamp alarm",
            f"{', '.join(other) or 'none'} in {healths} health messages since",
            not other and healths > 0,
        ),
        st.integrity("lamp-fails"),
    ]


@scenario("sensor-unplugged", "pole 1's BME280 comes loose: health says so, the rest flows")
async def sensor_unplugged(work: Path, broker: str, control: bool = False) -> list[Row]:
    """An I2C sensor that loses its connector NACKs: the runner restarts it with backoff,
    marks it down and raises <name>_missing at once. (A serial sensor that falls silent
    is reported after its descriptor's silent_after_s, 10 s for the SDS011.)"""
    w = 2
    st = Stage(work, broker, 2, sensors="basic", window_s=w, health_s=w)
    await st.start()

    def flowing(p: int, series: str, after: float = 0.0) -> list[int]:
        return [
            int(s["count"])  # type: ignore[call-overload]
            for t, s in sorted(st.stats(p, series).items())
            if t > after and "count" in s
        ]

    await st.until(lambda: all(any(flowing(p, "bme280/temperature")) for p in (0, 1)), 10)
    unplug, unplug_wall = time.monotonic(), time.time()
    if not control:
        sp = st.poles[0]
        assert sp is not None
        sp.i2c.unplug(BME280_ADDR)

    def reported() -> Seen | None:
        for s in st.accepted(0, "health"):
            if s.real < unplug:
                continue
            names = {r.name.split("/", 1)[1]: r.value for r in s.v.records}
            if names.get("sensor/bme280/up") is False and names.get("alarm/bme280_missing"):
                return s
        return None

    # Whole windows after the unplug: the first one that starts after it.
    after = unplug_wall + w
    await st.until(
        lambda: reported() is not None and len(flowing(0, "sds011/pm2_5", after)) >= 2, 10
    )
    await st.stop()
    rep = reported()
    sds = flowing(0, "sds011/pm2_5", after)
    bme = flowing(0, "bme280/temperature", after)
    other = flowing(1, "bme280/temperature", after)
    return [
        Row(
            "sensor-unplugged",
            f"pole 1: health reports the BME280 down (up = false, bme280_missing) within "
            f"one window ({w} s)",
            f"after {rep.real - unplug:.1f} s" if rep else "not reported",
            rep is not None and rep.real - unplug <= w,
        ),
        Row(
            "sensor-unplugged",
            "pole 1: SDS011 windows keep their samples; BME280 windows are empty",
            f"samples per window: SDS011 {sds}, BME280 {bme}",
            len(sds) >= 2 and all(n > 0 for n in sds) and bool(bme) and not any(bme),
        ),
        Row(
            "sensor-unplugged",
            "pole 2: its BME280 flows on",
            f"samples per window: BME280 {other}",
            len(other) >= 2 and all(n > 0 for n in other),
        ),
        st.integrity("sensor-unplugged"),
    ]


@scenario("broker-outage", "the broker is down 3 s: every window arrives, exactly once")
async def broker_outage(work: Path, broker: str, control: bool = False) -> list[Row]:
    """Uses a Mosquitto of its own (it is stopped and restarted), with persistence so the
    verifier's session survives the restart. 1 s windows, so the outage spans three."""
    del broker
    w, outage = 1, 3.0
    with Mosquitto(workdir=work / "mosq", persistent=True) as mosq:
        st = Stage(work, mosq.url, 3, sensors="basic", window_s=w, health_s=5)
        await st.start()
        await st.until(lambda: all(len(st.window_ends(p)) >= 2 for p in range(3)), 10)
        down_wall = time.time()
        if not control:
            mosq.stop()
        await asyncio.sleep(outage)
        up, up_wall = time.monotonic(), time.time()
        if not control:
            mosq.start()

        def caught_up() -> bool:  # reconnect backoff, then the backlog drains
            return all(
                (e := st.window_ends(p)) and e[-1] >= up_wall + 2 * w and not _gaps(e, w)
                for p in range(3)
            )

        await st.until(caught_up, 25)
        await st.stop()
    rows = []
    for p in range(3):
        ends = st.window_ends(p)
        missing = _gaps(ends, w)
        twice = len(ends) - len(set(ends))
        spooled = {
            int(s.v.records[0].time)
            for s in st.accepted(p, "data")
            if down_wall < s.v.records[0].time <= up_wall and s.real > up
        }
        rows.append(
            Row(
                "broker-outage",
                f"pole {p + 1}: every window arrives once, those sealed during the outage after it",
                f"{len(ends)} windows, {len(missing)} missing, {twice} twice; "
                f"{len(spooled)} sealed during the {outage:.0f} s outage arrived after it",
                len(ends) >= 6 and not missing and not twice and len(spooled) >= 2,
            )
        )
    rows.append(st.integrity("broker-outage"))
    return rows


@scenario("power-cut-at-dawn", "the controller dies at dawn with a full spool; back 15 min later")
async def power_cut(work: Path, broker: str, control: bool = False) -> list[Row]:
    """Once its first windows are in (about 07:29:25) the pole's uplink drops, so it
    spools; at dawn its power goes (its daemon, a process of its own, gets SIGKILL: no
    goodbye). Power and link come back at 07:45. What was spooled must arrive then, under
    the old boot's counters, and the new boot must count on from a new boot number.
    10x, 10 s windows."""
    w = 10
    d = "2026-11-27"
    dawn = local_epoch(d, "07:30")
    clock = SimClock(dawn - 60, rate=10)
    st = Stage(
        work, broker, 1, sensors="basic", window_s=w, clock=clock, health_s=6 * w, processes=(0,)
    )
    link = Uplink(broker)
    await link.up()
    st.pole_broker[0] = link.url
    await st.start()
    await st.until(lambda: len(st.window_ends(0)) >= 2, 10)
    if not control:
        await link.down()
    await clock.until(dawn)
    if not control:
        await st.power_off(0, hard=True)
    back = dawn + 15 * 60
    await link.up()
    if not control:
        clock.jump(back)
        await st.power_on(0)
    restart = time.monotonic()

    def done() -> bool:
        boots = st.boots(0)
        return (
            len(boots) == 2
            and max(st.window_ends(0, boots[0])) >= dawn - w
            and len(st.window_ends(0, boots[1])) >= 2
        )

    await st.until(done, 10)
    await st.stop()
    await link.down()
    boots, births = st.boots(0), st.births(0)
    first = st.window_ends(0, boots[0]) if boots else []
    second = st.window_ends(0, boots[1]) if len(boots) > 1 else []
    late = [  # sealed before the cut, delivered after the restart: from the spool
        s
        for s in st.accepted(0, "data")
        if boots and s.v.cti >> 32 == boots[0] and s.v.records[0].time <= dawn and s.real >= restart
    ]
    return [
        Row(
            "power-cut-at-dawn",
            "a new boot after the cut, announced by a verified birth",
            f"boots {boots}, births {births}",
            len(boots) == 2 and boots[1] == boots[0] + 1 and births == boots,
        ),
        Row(
            "power-cut-at-dawn",
            "what was spooled when the power went arrives after the restart: the old boot's "
            "windows up to dawn, none missing",
            f"boot 1: {len(first)} windows {_hm(min(first, default=0), True)}-"
            f"{_hm(max(first, default=0), True)}, {len(_gaps(first, w))} missing, "
            f"{len(late)} delivered after the restart",
            len(first) >= 4 and not _gaps(first, w) and max(first) >= dawn - w and len(late) >= 2,
        ),
        Row(
            "power-cut-at-dawn",
            "the new boot stamps its windows from 07:45, when the power came back",
            f"boot 2: {len(second)} windows from {_hm(min(second, default=0), True)}",
            len(second) >= 2 and min(second) > back,
        ),
        st.integrity("power-cut-at-dawn"),
    ]


async def run(
    names: list[str],
    broker_url: str | None,
    work: Path,
    say: Callable[[str], None] = print,
    control: bool = False,
) -> list[Row]:
    """Run the named scenarios (all when empty) against ``broker_url`` (or a Mosquitto
    of our own) and return the report rows."""
    names = names or list(CATALOGUE)
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; known: {', '.join(CATALOGUE)}")
    own = None
    if broker_url is None:
        own = Mosquitto(workdir=work / "broker").start()
        broker_url = own.url
    rows: list[Row] = []
    try:
        for name in names:
            say(f"running {name}{' (control: no fault)' if control else ''}: {CATALOGUE[name][0]}")
            d = work / name
            d.mkdir(parents=True, exist_ok=True)
            t0 = time.monotonic()
            try:
                got = await CATALOGUE[name][1](d, broker_url, control=control)
            finally:  # a scenario that crashed leaves no pole process behind
                for st in list(Stage.live):
                    await st.stop(settle=0)
            say(f"  {sum(r.ok for r in got)} of {len(got)} met ({time.monotonic() - t0:.0f} s)")
            rows += got
    finally:
        if own:
            own.close()
    return rows


def format_table(rows: list[Row]) -> str:
    """The report: one line per expectation, columns padded to fit."""
    heads = ("scenario", "the city should observe", "observed at the verifier", "result")
    cells = [(r.scenario, r.expectation, r.observed, "pass" if r.ok else "FAIL") for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    line = "  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    return "\n".join(out) + "\n"

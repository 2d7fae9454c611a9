"""The stage the scenarios play on: simulated poles, a real broker and the city's verifier.

A ``Stage`` drives a small fleet (the real edge pipeline per pole: drivers, windows,
privacy gate, signing, spool, its own MQTT connection) against a real broker and keeps
what the city's verifier made of every message: a scenario checks its expectations
**at the verifier**: only signed messages that verified against the exported trust list
count, never a peek into the simulator. ``scenario`` registers a scenario in
``CATALOGUE``; ``run`` runs scenarios and returns report rows (scenario, expectation,
observed, pass); ``format_table`` prints them. The scenarios themselves, the catalogue,
are in host_sim.scenarios.

Time is real or accelerated: ``SimClock`` (host_sim.simtime) runs the world and the
poles' wall clock ``rate`` times faster from a chosen local time (so dusk is seconds
away) and can jump (a day passes in an instant); the daemons scale their window, bin
and health sleeps by that rate, so packs are stamped in simulated time. Sensor
polling, debounce timers and MQTT stay in real time.

Scenarios wait for what they expect with a deadline (``Stage.until``) instead of
sleeping fixed times: a passing run ends as soon as the verifier has seen enough, a
failing one at the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edge.config import parse_broker_url
from host_sim.broker import Mosquitto, free_port
from host_sim.pole import SimPole, ensure_identity
from host_sim.simtime import UTC_OFFSET_H, SimClock
from host_sim.world import World
from provisioning.receiver import run_receiver
from provisioning.trustlist import TrustList, load_keys
from provisioning.verifier import Verdict, Verifier

__all__ = [
    "CATALOGUE",
    "Row",
    "Scenario",
    "Seen",
    "Stage",
    "Uplink",
    "alarm_within",
    "format_table",
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
        _tls, host, port = parse_broker_url(broker_url)
        self.target = (host, port)
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
    started: ClassVar[list[Stage]] = []  # every stage the running scenario started: its plots

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
        Stage.started.append(self)
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


async def alarm_within(
    st: Stage,
    name: str,
    expect: str,
    *,
    pole: int,
    alarm: str,
    since: float,
    w: int,
    quiet: int,
    event: str,
) -> tuple[Row, int]:
    """The shape of a fault on one pole of two: wait until ``pole`` has raised ``alarm``
    after ``since`` and the ``quiet`` pole has reported health since (or the deadline:
    one window, and a little), then stop the stage. Returns the row "``alarm`` within one
    window (``w`` s) of the ``event``, none before", and the number of health messages
    of the quiet pole since, for the scenario's row about it."""

    def seen_enough() -> bool:  # the pole alarmed, and the quiet pole reported health since
        at = st.alarm_at(pole, alarm, since)
        return at is not None and any(s.real > at for s in st.accepted(quiet, "health"))

    await st.until(seen_enough, w + 2)  # the deadline, and a little
    await st.stop()
    at = st.alarm_at(pole, alarm, since)
    early = st.alarm_at(pole, alarm, 0)
    healths = len([s for s in st.accepted(quiet, "health") if s.real > since])
    row = Row(
        name,
        expect,
        (f"after {at - since:.1f} s" if at else "no alarm")
        + ("" if early == at else f"; an alarm before the {event}"),
        at is not None and at - since <= w and early == at,
    )
    return row, healths


async def run(
    names: list[str],
    broker_url: str | None,
    work: Path,
    say: Callable[[str], None] = print,
    control: bool = False,
    plots: Path | None = None,
) -> list[Row]:
    """Run the named scenarios (all when empty) against ``broker_url`` (or a Mosquitto
    of our own) and return the report rows; with ``plots``, a picture of what the city
    saw in each scenario goes there (host_sim/plots.py)."""
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
            Stage.started.clear()
            try:
                got = await CATALOGUE[name][1](d, broker_url, control=control)
            finally:  # a scenario that crashed leaves no pole process behind
                for st in list(Stage.live):
                    await st.stop(settle=0)
            say(f"  {sum(r.ok for r in got)} of {len(got)} met ({time.monotonic() - t0:.0f} s)")
            if plots is not None:
                from host_sim.plots import plot

                drawn = plot(name, list(Stage.started), plots / f"{name}.svg")
                if drawn:
                    say(f"  plot: {drawn}")
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

"""The scenario catalogue: situations that matter to the city, replayed on simulated poles.

Each scenario drives a small fleet (the real edge pipeline per pole: drivers, windows,
gate, signing, spool, its own MQTT connection) against a real broker, states what the
city should observe, and checks it **at the verifier**: only signed messages that
verified against the trust list count, never a peek into the simulator. ``run``
returns report rows (scenario, expectation, observed, pass); ``format_table`` prints
them. ``pole-sim scenario`` runs the catalogue; tests/test_scenarios.py runs it in CI.

Time is real or accelerated: ``SimClock`` runs the world and the poles' wall clock
``rate`` times faster from a chosen local time (so dusk is seconds away), and the
daemons scale their window, bin and health sleeps by that rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from host_sim.broker import Mosquitto
from host_sim.pole import SimPole
from host_sim.simtime import UTC_OFFSET_H, SimClock, local_epoch  # noqa: F401 - re-exported
from host_sim.world import World
from provisioning.receiver import run_receiver
from provisioning.trustlist import TrustList, load_keys
from provisioning.verifier import Verdict, Verifier


class Row:
    __slots__ = ("scenario", "expectation", "observed", "ok")

    def __init__(self, scenario: str, expectation: str, observed: str, ok: bool) -> None:
        self.scenario = scenario
        self.expectation = expectation
        self.observed = observed
        self.ok = ok


class Seen:
    """One verified message: when it arrived (real monotonic) and its verdict."""

    __slots__ = ("real", "topic", "v")

    def __init__(self, real: float, topic: str, v: Verdict) -> None:
        self.real = real
        self.topic = topic
        self.v = v


class Stage:
    """A few simulated poles and the city's verifier, in one event loop."""

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
    ) -> None:
        self.work = work
        self.broker_url = broker_url
        self.prefix = "sc" + os.urandom(3).hex()  # retained messages of other runs: not ours
        self.clock = clock
        self.world = World(seed=seed, clock=clock.wall if clock else time.time)
        self.kw = {
            "window_s": window_s,
            "health_s": health_s or window_s * 2,
            "topic_prefix": self.prefix,
            "sensors": sensors,
            "config_overrides": overrides,
        }
        self.ids = [f"nl-sc-{i + 1:04d}" for i in range(n)]
        # What each pole experiences; the scenarios turn these knobs (tilt, lamp, ...).
        self.pw = [self.world.pole(i) for i in range(n)]
        self.poles: list[SimPole | None] = [self._pole(i) for i in range(n)]
        trust = TrustList(work / "trust.sqlite")
        for sp in self.poles:
            assert sp is not None
            trust.add(sp.pole_id, sp.identity.public_key)
        trust.export_file(work / "trust.json")
        trust.close()
        self.verifier = Verifier(load_keys(work / "trust.json"), topic_prefix=self.prefix)
        self.seen: list[Seen] = []
        self._stops: list[asyncio.Event | None] = [None] * n
        self._tasks: list[asyncio.Task | None] = [None] * n
        self._recv_stop = asyncio.Event()

    def _pole(self, i: int) -> SimPole:
        clock = self.clock.edge_clock() if self.clock else None
        return SimPole(
            self.ids[i],
            self.work / self.ids[i],
            self.broker_url,
            self.pw[i],
            clock=clock,
            **self.kw,  # type: ignore[arg-type]
        )

    async def start(self, poles: list[int] | None = None) -> None:
        ready = asyncio.Event()
        self._recv = asyncio.create_task(
            run_receiver(
                self.broker_url,
                self.verifier,
                lambda t, v: self.seen.append(Seen(time.monotonic(), t, v)),
                self._recv_stop,
                ready=ready,
                client_id="verifier-" + self.prefix,
            )
        )
        await asyncio.wait_for(ready.wait(), 15)
        for i in range(len(self.ids)) if poles is None else poles:
            self.power_on(i)

    def power_on(self, i: int) -> None:
        """Start pole i's daemon (after a power loss: a new process on the same state)."""
        if self._tasks[i] is not None:
            return
        sp = self.poles[i] or self._pole(i)
        self.poles[i] = sp
        self._stops[i] = asyncio.Event()
        self._tasks[i] = asyncio.create_task(sp.run(self._stops[i]))  # type: ignore[arg-type]

    async def power_off(self, i: int) -> None:
        stop, task = self._stops[i], self._tasks[i]
        if stop is None or task is None:
            return
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        self._tasks[i] = self._stops[i] = None
        self.poles[i] = None  # its ptys and spool are closed; a new daemon comes at power-on

    async def stop(self, settle: float = 1.5) -> None:
        for i in range(len(self.ids)):
            await self.power_off(i)
        await asyncio.sleep(settle)
        self._recv_stop.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(self._recv, 10)

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
        """(pack time, value) of every verified record ending in ``suffix``."""
        out = []
        for s in self.accepted(pole, kind):
            for r in s.v.records:
                if r.name.endswith(suffix):
                    out.append((r.time, r.value))
        return out

    def alarm_at(self, pole: int, name: str, after: float) -> float | None:
        """Real arrival time of the first health message after ``after`` with the alarm."""
        for s in self.accepted(pole, "health"):
            if s.real >= after and any(r.name.endswith("/alarm/" + name) for r in s.v.records):
                return s.real
        return None


# A scenario: (work dir, broker URL, control) -> report rows. ``control=True`` runs it
# without its fault, to show that its expectations can fail (a control experiment).
Scenario = Callable[..., Awaitable[list[Row]]]
CATALOGUE: dict[str, tuple[str, Scenario]] = {}


def scenario(name: str, summary: str) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        CATALOGUE[name] = (summary, fn)
        return fn

    return register


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


# -- the catalogue ----------------------------------------------------------------------------
@scenario("day-night", "dusk and dawn at 60x speed; a pole on a switched circuit")
async def day_night(work: Path, broker: str, control: bool = False) -> list[Row]:
    """Lamps are switched at 17:00 and 07:30 local time. Poles 1-2 have permanent power;
    pole 3 sits on the switched lighting circuit, so its controller is off by day."""
    day = "2026-11-27"
    clock = SimClock(local_epoch(day, "16:57"), rate=60)
    st = Stage(work, broker, 3, window_s=60, clock=clock, health_s=300)
    dusk, dawn = local_epoch(day, "17:00"), local_epoch("2026-11-28", "07:30")
    switched = st.pw[2]

    async def circuit() -> None:  # the switched pole follows the lighting circuit
        while True:
            if switched.lamp_commanded():
                st.power_on(2)
            else:
                await st.power_off(2)
            await asyncio.sleep(0.1)

    await st.start(poles=[0, 1])
    watcher = asyncio.create_task(circuit())
    await clock.until(dusk + 6 * 60)
    clock.jump(local_epoch("2026-11-28", "07:26"))
    await clock.until(dawn + 4 * 60)
    watcher.cancel()
    await st.stop()
    rows = []
    for p in (0, 1):
        cur = st.series(p, "/ina219/current/mean")
        before = [v for t, v in cur if t <= dusk]
        night = [v for t, v in cur if dusk + 120 < t <= dawn]
        after = [v for t, v in cur if t > dawn + 120]
        ok = bool(before and night and after) and (
            max(before) < 0.1 and min(night) > 2.0 and max(after) < 0.1
        )
        rows.append(
            Row(
                "day-night",
                f"pole {p + 1}: lamp current off by day, on from dusk, off after dawn",
                f"{_mean(before):.2f} A / {_mean(night):.2f} A / {_mean(after):.2f} A "
                f"({len(before)}/{len(night)}/{len(after)} windows)",
                ok,
            )
        )
    data = [t for t, _ in st.series(2, "/window")]
    births = st.accepted(2, "birth")
    boots = sorted({int(r.value) for s in births for r in s.v.records if r.name.endswith("/boot")})
    ok = (
        bool(data)
        and all(dusk < t <= dawn + 60 for t in data)
        and len(boots) == 1
        and not st.rejected()
    )
    rows.append(
        Row(
            "day-night",
            "switched pole: silent by day, boots at dusk, nothing after dawn",
            f"{len(data)} windows between {_hm(min(data, default=0))} and "
            f"{_hm(max(data, default=0))}, boot(s) {boots}",
            ok,
        )
    )
    return rows


def _hm(t: float) -> str:
    return time.strftime("%H:%M", time.gmtime(t + UTC_OFFSET_H * 3600)) if t else "-"


@scenario("heat-wave", "temperatures rise 8 degrees; the verifier sees it on every pole")
async def heat_wave(work: Path, broker: str, control: bool = False) -> list[Row]:
    st = Stage(work, broker, 3, sensors="basic", window_s=2)
    await st.start()
    await asyncio.sleep(7)
    t_heat = time.time()
    st.world.heat_wave = 8.0
    await asyncio.sleep(7)
    await st.stop()
    rows = []
    for p in range(3):
        temp = st.series(p, "/bme280/temperature/mean")
        before = [v for t, v in temp if t <= t_heat]
        after = [v for t, v in temp if t > t_heat + 2.5]  # a whole window into the heat
        rise = _mean(after) - _mean(before)
        rows.append(
            Row(
                "heat-wave",
                f"pole {p + 1}: mean temperature rises 8 +- 1.5 degC",
                f"{_mean(before):.2f} -> {_mean(after):.2f} degC (+{rise:.2f})",
                bool(before and after) and abs(rise - 8.0) <= 1.5,
            )
        )
    return rows


@scenario("crowd", "a cycling race passes poles 1-2: their bicycle counts rise, 3-4 stay quiet")
async def crowd(work: Path, broker: str, control: bool = False) -> list[Row]:
    """Counts leave only as privacy bins (min 60 s, small counts as "<k"): at 20x speed a
    60 s bin lasts 3 s, with k = 3 so a short test can see numbers."""
    clock = SimClock(time.time(), rate=20)
    privacy = {"bin_s": 60, "k": 3, "round_to": 1}
    st = Stage(work, broker, 4, window_s=60, clock=clock, overrides={"privacy": privacy})
    route = (0, 1)
    for p in route:
        sp = st.poles[p]
        assert sp is not None
        sp.street.rates = (6 / 60, 360 / 60)  # the peloton: six bicycles a second
        sp.street.spacing_s = 0.25
    await st.start()
    await asyncio.sleep(14)
    await st.stop()
    rows = []
    for p in range(4):
        bins = st.series(p, "/ld2450/bicycles/count", kind="counts")
        nums = [v for _, v in bins if isinstance(v, (int, float))]
        on_route = p in route
        ok = bool(bins) and (max(nums, default=0) >= 3 if on_route else not nums)
        rows.append(
            Row(
                "crowd",
                f"pole {p + 1} ({'on' if on_route else 'off'} the route): bicycle bins "
                + ("rise to k or more" if on_route else 'stay "<3"'),
                f"{len(bins)} bins: {', '.join(str(v) for _, v in bins)}",
                ok,
            )
        )
    return rows


@scenario("pole-knocked", "a truck hits pole 1: pole_tilted within one window, not on pole 2")
async def pole_knocked(work: Path, broker: str, control: bool = False) -> list[Row]:
    st = Stage(work, broker, 2, window_s=2)
    await st.start()
    await asyncio.sleep(5)
    hit = time.monotonic()
    if not control:
        st.pw[0].tilt_deg = 14.0
    await asyncio.sleep(5)
    await st.stop()
    at = st.alarm_at(0, "pole_tilted", hit)
    other = st.alarm_at(1, "pole_tilted", 0)
    early = st.alarm_at(0, "pole_tilted", 0)
    return [
        Row(
            "pole-knocked",
            "pole 1: pole_tilted alarm within one window (2 s) of the impact",
            f"after {at - hit:.1f} s" if at else "no alarm",
            at is not None and at - hit <= 2 + 1 and early == at,
        ),
        Row(
            "pole-knocked",
            "pole 2 (standing): no tilt alarm",
            "none" if other is None else "alarm",
            other is None,
        ),
    ]


@scenario("lamp-fails", "pole 2's lamp fails at night: lamp_failed within a window")
async def lamp_fails(work: Path, broker: str, control: bool = False) -> list[Row]:
    st = Stage(work, broker, 2, window_s=2)
    for p in (0, 1):
        st.pw[p].lamp_override = True  # night: the lamps are commanded on
    await st.start()
    await asyncio.sleep(6)  # the lamp monitor settles
    fail = time.monotonic()
    st.pw[1].lamp_failed = True
    await asyncio.sleep(7)
    await st.stop()
    at = st.alarm_at(1, "lamp_failed", fail)
    early = st.alarm_at(1, "lamp_failed", 0)
    other = st.alarm_at(0, "lamp_failed", 0)
    return [
        Row(
            "lamp-fails",
            "pole 2: lamp_failed within one window after the 2 s debounce",
            f"after {at - fail:.1f} s" if at else "no alarm",
            at is not None and at - fail <= 2 + 2 + 1 and early == at,
        ),
        Row(
            "lamp-fails",
            "pole 1 (burning): no lamp alarm",
            "none" if other is None else "alarm",
            other is None,
        ),
    ]


@scenario("sensor-unplugged", "pole 1's SDS011 cable comes loose: health says so, the rest flows")
async def sensor_unplugged(work: Path, broker: str, control: bool = False) -> list[Row]:
    st = Stage(work, broker, 2, sensors="basic", window_s=2)
    await st.start()
    await asyncio.sleep(4)
    unplug = time.time()
    sp = st.poles[0]
    assert sp is not None
    sp.pty.unplug()
    await asyncio.sleep(10)
    await st.stop()
    down = None
    for s in st.accepted(0, "health"):
        names = {r.name.split("/", 1)[1]: r.value for r in s.v.records}
        if names.get("sensor/sds011/up") is False or names.get("alarm/sds011_missing"):
            down = s
            break
    bme_after = [t for t, _ in st.series(0, "/bme280/temperature/count") if t > unplug + 4]
    sds_after = [v for t, v in st.series(0, "/sds011/pm2_5/count") if t > unplug + 8]
    return [
        Row(
            "sensor-unplugged",
            "pole 1: health reports the SDS011 down",
            "reported" if down else "not reported",
            down is not None,
        ),
        Row(
            "sensor-unplugged",
            "pole 1: BME280 windows keep arriving; SDS011 windows hold no samples",
            f"{len(bme_after)} BME280 windows, SDS011 sample counts {sds_after}",
            len(bme_after) >= 2 and all(v == 0 for v in sds_after),
        ),
    ]


@scenario("broker-outage", "the broker is down 8 s: every message arrives once afterwards")
async def broker_outage(work: Path, broker: str, control: bool = False) -> list[Row]:
    """Uses a Mosquitto of its own (it is stopped and restarted), with persistence so the
    verifier's session survives the restart."""
    del broker
    with Mosquitto(workdir=work / "mosq", persistent=True) as mosq:
        st = Stage(work, mosq.url, 3, sensors="basic", window_s=1)
        await st.start()
        await asyncio.sleep(4)
        mosq.stop()
        await asyncio.sleep(8)
        mosq.start()
        await asyncio.sleep(12)  # reconnect backoff, then the backlog drains
        await st.stop(settle=3)
    rows = []
    for p in range(3):
        missing, ends = _missing_windows(st, p, 1)
        accepted = [s.v.cti for s in st.accepted(p)]
        reused = len(accepted) - len(set(accepted))
        rows.append(
            Row(
                "broker-outage",
                f"pole {p + 1}: every window arrives, each exactly once",
                f"{len(ends)} windows, {len(missing)} missing, {reused} accepted twice",
                len(ends) >= 20 and not missing and reused == 0,
            )
        )
    return rows


def _missing_windows(st: Stage, pole: int, window_s: int, boot: int | None = None):
    """Window ends absent between the first and the last verified data window (of one
    boot): the city's measure of "nothing lost"."""
    ends = sorted(
        int(s.v.records[0].time)
        for s in st.accepted(pole, "data")
        if boot is None or s.v.cti >> 32 == boot
    )
    if not ends:
        return [], ends
    want = set(range(ends[0], ends[-1] + 1, window_s))
    return sorted(want - set(ends)), ends


@scenario("power-cut-at-dawn", "the controller loses power mid-stream and comes back")
async def power_cut(work: Path, broker: str, control: bool = False) -> list[Row]:
    """The daemon runs as its own process and is killed (SIGKILL: no goodbye, as when
    the lighting circuit switches off at dawn), then started again on the same state."""
    st = Stage(work, broker, 1, sensors="basic", window_s=1)
    sp = st.poles[0]
    assert sp is not None
    for p in sp.ptys:
        p.close()
    sp.pole.spool.close()
    st.poles[0] = None
    await st.start(poles=[])
    cmd = [
        sys.executable, "-m", "host_sim.cli", "pole", "--pole-id", st.ids[0],
        "--state-dir", str(work / st.ids[0]), "--broker", broker, "--window", "1",
        "--prefix", st.prefix,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await asyncio.sleep(6)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    await asyncio.sleep(2)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await asyncio.sleep(7)
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)
    await st.stop(settle=2)
    accepted = [s.v.cti for s in st.accepted(0)]
    boots = sorted({cti >> 32 for cti in accepted})
    lost = {b: len(_missing_windows(st, 0, 1, b)[0]) for b in boots}
    first = _missing_windows(st, 0, 1, boots[0])[1] if boots else []
    births = sorted(s.v.cti >> 32 for s in st.accepted(0, "birth"))
    return [
        Row(
            "power-cut-at-dawn",
            "a new boot after the cut, announced by a verified birth",
            f"boots {boots}, births from boots {births}",
            len(boots) == 2 and boots[1] == boots[0] + 1 and births == boots,
        ),
        Row(
            "power-cut-at-dawn",
            "nothing spooled is lost (windows of each boot contiguous), no counter reused",
            f"{len(accepted)} messages, windows missing per boot {lost}, "
            f"{len(accepted) - len(set(accepted))} reused",
            len(boots) == 2 and not any(lost.values()) and len(accepted) == len(set(accepted)),
        ),
        Row(
            "power-cut-at-dawn",
            "the windows from before the cut arrive",
            f"{len(first)} windows of the first boot",
            len(first) >= 3,
        ),
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
            say(f"running {name}: {CATALOGUE[name][0]}")
            d = work / name
            d.mkdir(parents=True, exist_ok=True)
            rows += await CATALOGUE[name][1](d, broker_url, control=control)
    finally:
        if own:
            own.close()
    return rows


def format_table(rows: list[Row]) -> str:
    heads = ("scenario", "the city should observe", "observed at the verifier", "result")
    cells = [(r.scenario, r.expectation, r.observed, "pass" if r.ok else "FAIL") for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    line = "  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    return "\n".join(out) + "\n"

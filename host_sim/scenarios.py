"""The scenario catalogue: situations that matter to the city, replayed on simulated poles.

Each scenario drives a small fleet on a ``Stage`` (host_sim.stage: the poles, a real
broker and the city's verifier), states what the city should observe, and checks it
**at the verifier**: only signed messages that verified against the exported trust list
count, never a peek into the simulator. ``run`` returns report rows (scenario,
expectation, observed, pass); ``format_table`` prints them. ``pole-sim scenario`` runs
the catalogue; tests/test_scenarios.py runs it in CI. Every scenario can run as a
*control* (``control=True``): the same timeline without its fault, whose expectations
must then fail, which shows that they can.

This module is the public entry point: it registers the scenarios below, in this order,
and re-exports what callers use from host_sim.stage. Time runs real or accelerated
(``SimClock``), and scenarios wait for what they expect with a deadline; see
host_sim.stage. The whole catalogue takes about 70 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from pathlib import Path

from host_sim.broker import Mosquitto
from host_sim.pole import BME280_ADDR
from host_sim.simtime import SimClock, local_epoch
from host_sim.stage import (
    CATALOGUE,
    Row,
    Seen,
    Stage,
    Uplink,
    _gaps,
    _hm,
    _mean,
    alarm_within,
    format_table,
    run,
    scenario,
)

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


@scenario("day-night", "dawn and dusk at 300x: lamps switched; pole 3 on the switched circuit")
async def day_night(work: Path, broker: str, control: bool = False) -> list[Row]:
    """Lamps are switched at 07:30 and 17:00 local time. Poles 1-2 have permanent power;
    pole 3's controller hangs on the switched lighting circuit: it loses power at dawn
    (no goodbye: SIGKILL) and boots again at dusk. 5-minute windows, one a real second;
    the day between 07:40 and 16:50 passes in an instant."""
    w, d = 300, "2026-11-27"
    clock = SimClock(local_epoch(d, "07:15"), rate=w)
    # No lamp test by day here: its seven real seconds of lamp would be 35 minutes at
    # 300x and fill whole windows that this scenario judges by the schedule alone.
    no_test = {"lamp": {"test_by_day": False}}
    st = Stage(
        work, broker, 3, window_s=w, clock=clock, health_s=2 * w, processes=(2,), overrides=no_test
    )
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
    At 10x a 60 s bin lasts 6 real seconds; k = 3 so a short run can see numbers. One
    quiet bin (11:00-11:01), then the peloton (six riders a second) for two bins."""
    k, w = 3, 60
    d = "2026-05-17"
    race = local_epoch(d, "11:01")
    clock = SimClock(race - 130, rate=10)  # the first bin (merged if short) ends by 11:01
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

    tilted, healths = await alarm_within(
        st,
        "pole-knocked",
        f"pole 1: pole_tilted alarm in the health stream within one window ({w} s) of "
        "the impact, none before",
        pole=0,
        alarm="pole_tilted",
        since=hit,
        w=w,
        quiet=1,
        event="impact",
    )
    other = st.alarm_at(1, "pole_tilted", 0)
    return [
        tilted,
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

    failed, healths = await alarm_within(
        st,
        "lamp-fails",
        f"pole 2: lamp_failed in the health stream within one window ({w} s, with the "
        "2 s debounce), none before",
        pole=1,
        alarm="lamp_failed",
        since=fail,
        w=w,
        quiet=0,
        event="failure",
    )
    other = [
        n
        for n in ("lamp_failed", "lamp_degraded", "lamp_day_burner")
        if st.alarm_at(0, n, 0) is not None
    ]
    return [
        failed,
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

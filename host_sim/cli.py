"""``pole-sim``: simulated poles on a laptop or in CI.

``pole-sim demo`` starts a broker (Mosquitto if installed, else an embedded one),
provisions N simulated poles (keys generated in their own state directories,
registered in a trust list), runs the real edge daemon for each, and a verifier
that prints every decoded, verified reading as it arrives. Beside it runs the city's
side (city/web/live.py): an ingest worker storing what it verifies in a SQLite store in
the work directory, and the web service over that store, whose live map (the URL is
printed) shows the poles, the truck and the failing lamp as they happen. It stops by
itself after ``--duration`` seconds or on Ctrl-C, and removes everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from host_sim.broker import EmbeddedBroker, Mosquitto, mosquitto_path
from host_sim.field import add_sensor_option
from host_sim.pole import SimPole
from host_sim.simtime import SimClock, local_epoch
from host_sim.world import World
from provisioning.receiver import run_receiver
from provisioning.report import format_verdict
from provisioning.trustlist import TrustList, load_keys
from provisioning.verifier import Verdict, Verifier


async def demo(args: argparse.Namespace) -> int:
    workdir_ctx = (
        contextlib.nullcontext(args.workdir)
        if args.workdir
        else tempfile.TemporaryDirectory(prefix="lightpole-demo-")
    )
    with workdir_ctx as wd:
        work = Path(wd)
        broker_url = args.broker
        mosq = embedded = None
        if broker_url is None:
            if mosquitto_path():
                mosq = Mosquitto(workdir=work / "broker").start()
                broker_url = mosq.url
                print(f"broker: Mosquitto on {broker_url}")
            else:
                embedded = EmbeddedBroker()
                await embedded.start()
                broker_url = embedded.url
                print(f"broker: embedded amqtt on {broker_url} (install mosquitto for a real one)")
        else:
            print(f"broker: {broker_url}")
        try:
            return await _run_demo(args, work, broker_url, mqtt5=embedded is None)
        finally:
            if mosq:
                mosq.close()
            if embedded:
                await embedded.stop()


def _place(i: int) -> dict:
    """Where demo pole i stands: along a street in Eindhoven, 40 m apart, 25 to a row."""
    row, col = divmod(i, 25)
    return {"location": {"lat": 51.4416 + row * 0.00036, "lon": 5.4697 + col * 0.00058}}


async def _run_demo(
    args: argparse.Namespace, work: Path, broker_url: str, mqtt5: bool = True
) -> int:
    clock = None
    if args.at is not None:  # simulated wall time from today's HH:MM, at real speed
        clock = SimClock(local_epoch(time.strftime("%Y-%m-%d"), args.at), 1.0)
        print(f"simulated time: from {args.at} (local) today")
    world = World(seed=args.seed, clock=clock.wall if clock else time.time)
    trust = TrustList(work / "trust.sqlite")
    poles = []
    for i in range(args.poles):
        pole_id = f"nl-demo-{i + 1:04d}"
        try:
            sp = SimPole(
                pole_id,
                work / pole_id,
                broker_url,
                world.pole(i),
                window_s=args.window,
                topic_prefix=args.prefix,
                sensors=args.sensors,
                extra_sensors=args.sensor,
                clock=clock.edge_clock() if clock else None,
                config_overrides=_place(i),
            )
        except ValueError as exc:
            print(f"pole-sim demo: {exc}", file=sys.stderr)
            return 2
        trust.add(pole_id, sp.identity.public_key, note="demo")
        poles.append(sp)
        models = ", ".join(s.model for s in sp.config.sensors)
        print(
            f"provisioned {pole_id}: key {sp.identity.fingerprint}; {models}; "
            f"SDS011 on {sp.pty.path}"
        )
    trust.export_file(work / "trust.json")
    trust.close()
    verifier = Verifier(load_keys(work / "trust.json"), topic_prefix=args.prefix)
    print(f"trust list exported to {work / 'trust.json'}; verifier uses only that file")
    city = None
    if args.map and not mqtt5:
        print("map: not shown (the city's ingest needs an MQTT 5 broker: install mosquitto)")
    elif args.map:
        from city.web.live import LiveCity

        city = LiveCity(
            work,
            broker_url,
            work / "trust.sqlite",
            prefix=args.prefix,
            host=args.map_host,
            port=args.map_port,
            silent_after_s=max(30.0, 6.0 * args.window),
            title="pole-sim demo",
        )
        try:
            url = await city.start()
        except (OSError, RuntimeError) as exc:
            print(f"pole-sim demo: the map cannot start: {exc}", file=sys.stderr)
            return 2
        print(f"map: {url} (live until the demo stops; --duration keeps it longer)")
    print(
        f"running {args.poles} poles, {args.window}s windows, for {args.duration}s (Ctrl-C stops)\n"
    )

    try:
        await _play(args, poles, verifier, broker_url, clock)
    finally:
        if city is not None:
            await city.stop()
    c = verifier.counts
    rejected = sum(n for k, n in c.items() if k.startswith("rejected"))
    print(
        f"\nverified {c['accepted']} messages ({c['duplicate']} duplicates stored once, "
        f"{rejected} rejected) from {args.poles} poles"
    )
    return 0 if c["accepted"] > 0 and rejected == 0 else 1


async def _play(
    args: argparse.Namespace,
    poles: list[SimPole],
    verifier: Verifier,
    broker_url: str,
    clock: SimClock | None,
) -> None:
    """Run the poles and the printing verifier until --duration or Ctrl-C."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ready = asyncio.Event()
    pole_stop = asyncio.Event()

    def show(topic: str, v: Verdict) -> None:
        line = format_verdict(topic, v)
        if line:
            print(line, flush=True)

    recv = asyncio.create_task(run_receiver(broker_url, verifier, show, stop, ready=ready))
    await asyncio.wait_for(ready.wait(), 15)
    tasks = [asyncio.create_task(p.run(pole_stop)) for p in poles]
    story = None
    if args.sensors == "full" and args.incidents and len(poles) >= 2:
        story = asyncio.create_task(_incidents(poles, args.duration, clock))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.duration)
    if story is not None:
        story.cancel()  # an incident still to come is not waited for
    pole_stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.3)  # let the last messages arrive
    stop.set()
    await asyncio.gather(recv, return_exceptions=True)


async def _incidents(poles: list[SimPole], duration: float, clock: SimClock | None) -> None:
    """Half-way through, a truck hits the second pole and the last pole's lamp fails. A
    failed lamp shows when the lamp is commanded on (dusk to dawn): by day the demo says
    so and how to see it (--at 21:00)."""
    await asyncio.sleep(duration / 2)
    poles[1].world.tilt_deg = 12.0
    print(f"--- incident: {poles[1].pole_id} hit by a truck (now leaning 12 deg)", flush=True)
    if len(poles) >= 3:
        poles[-1].world.lamp_failed = True
        night = poles[-1].world.lamp_commanded()
        hint = "" if night else " (by day the lamp is off: it shows at dusk; try --at 21:00)"
        print(f"--- incident: {poles[-1].pole_id} lamp fails{hint}", flush=True)


async def run_one_pole(args: argparse.Namespace) -> int:
    """One simulated pole in this process until SIGINT/SIGTERM (for crash tests and fleets)."""
    clock = None
    wall: Callable[[], float] = time.time
    if args.sim_start is not None or args.rate != 1.0:
        start = time.time() if args.sim_start is None else args.sim_start
        sim = SimClock(start, args.rate, ref=args.sim_ref)
        wall, clock = sim.wall, sim.edge_clock()
    world = World(seed=args.seed, clock=wall)
    try:
        sp = SimPole(
            args.pole_id,
            args.state_dir,
            args.broker,
            world.pole(args.index),
            window_s=args.window,
            health_s=args.health,
            topic_prefix=args.prefix,
            sensors=args.sensors,
            clock=clock,
            extra_sensors=args.sensor,
        )
    except ValueError as exc:
        print(f"pole-sim pole: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"{sp.pole_id} running (kid {sp.identity.kid.hex()}), broker {args.broker}", flush=True)
    await sp.run(stop)
    return 0


def _arg(check: Callable[[str], object], what: str) -> Callable[[str], object]:
    """An argparse type from a checking function: a bad value is one sentence."""

    def parse(text: str) -> object:
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc) or f"not {what}") from None

    parse.__name__ = what  # argparse names the type in its message
    return parse


def _count(lo: int, hi: int) -> Callable[[str], object]:
    def check(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise ValueError(f"{text} is not a whole number") from None
        if not lo <= n <= hi:
            raise ValueError(f"{text} is not from {lo} to {hi}")
        return n

    return _arg(check, "a whole number")


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{text} is not a number of seconds") from None
    if not v > 0:
        raise ValueError(f"{text} is not a positive number of seconds")
    return v


def _time_of_day(text: str) -> str:
    try:
        time.strptime(text, "%H:%M")
    except ValueError:
        raise ValueError(f"{text} is not a time of day such as 21:00") from None
    return text


def _names(what: str) -> Callable[[str], object]:
    from edge.names import check_id

    return _arg(lambda t: check_id(t, what), what)


def _broker_url(text: str) -> str:
    from edge.config import ConfigError, parse_broker_url

    try:
        parse_broker_url(text)
    except ConfigError as exc:
        raise ValueError(str(exc).replace("mqtt.url", "--broker")) from None
    return text


_seconds = _arg(_positive, "seconds")
_hhmm = _arg(_time_of_day, "HH:MM")
_pole_id = _names("pole id")
_prefix = _names("topic prefix")
_broker = _arg(_broker_url, "a broker URL")


def _log_level(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--log-level",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default=default,
        help=f"how much the daemon logs (default {default})",
    )


def main(argv: list[str] | None = None) -> int:
    import faulthandler

    if hasattr(signal, "SIGUSR1"):  # kill -USR1 <pid>: every thread's stack to stderr
        faulthandler.register(signal.SIGUSR1)
    ap = argparse.ArgumentParser(prog="pole-sim", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="simulated poles -> broker -> verifier, printed live")
    d.add_argument(
        "--poles", type=_count(1, 500), default=3, help="how many poles, 1 to 500 (default 3)"
    )
    d.add_argument(
        "--duration",
        type=_seconds,
        default=40.0,
        help="seconds before it stops by itself (default 40)",
    )
    d.add_argument(
        "--window", type=_count(1, 3600), default=5, help="aggregation window, s (default 5)"
    )
    d.add_argument(
        "--at",
        type=_hhmm,
        metavar="HH:MM",
        help="run the simulated street from this local time today, e.g. 21:00: the lamp "
        "incident shows only while lamps are on (17:00-07:30); default: now",
    )
    d.add_argument(
        "--broker", type=_broker, help="mqtt://HOST:PORT of an existing broker (default: start one)"
    )
    d.add_argument("--workdir", type=Path, help="keep pole state and trust list here")
    d.add_argument("--seed", type=int, default=1, help="world seed (default 1)")
    d.add_argument("--prefix", type=_prefix, default="poles", help="topic prefix (default poles)")
    d.add_argument(
        "--sensors",
        choices=("basic", "full"),
        default="full",
        help="full: every sensor model (default); basic: SDS011 + BME280",
    )
    add_sensor_option(d)
    d.add_argument(
        "--no-incidents",
        dest="incidents",
        action="store_false",
        help="no truck and no failing lamp half-way through",
    )
    d.add_argument(
        "--no-map",
        dest="map",
        action="store_false",
        help="no city side: no ingest into a store, no web service and map",
    )
    d.add_argument(
        "--map-host", default="127.0.0.1", help="address of the map's web service (127.0.0.1)"
    )
    d.add_argument(
        "--map-port",
        type=_count(0, 65535),
        default=0,
        help="port of the map's web service (default 0: a free one, printed)",
    )
    _log_level(d, "WARNING")
    c = sub.add_parser("conformance", help="run drivers against their simulators with faults")
    c.add_argument("models", nargs="*", help="sensor models (default: every one with a simulator)")
    c.add_argument("--descriptor", type=Path, help="a descriptor JSON of a driver of your own")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.add_argument(
        "--time-limit",
        type=float,
        default=1.0,
        help="seconds one driver call may take before it counts as blocking (default 1)",
    )
    _log_level(c, "ERROR")
    p = sub.add_parser("pole", help="run one simulated pole (the real daemon) until stopped")
    p.add_argument("--pole-id", type=_pole_id, required=True, help="e.g. nl-sim-0001")
    p.add_argument("--state-dir", type=Path, required=True, help="key, counters and spool")
    p.add_argument("--broker", type=_broker, required=True, help="mqtt://HOST:PORT")
    p.add_argument(
        "--window", type=_count(1, 3600), default=5, help="aggregation window, s (default 5)"
    )
    p.add_argument("--health", type=_count(1, 86400), default=None, help="health interval, s")
    p.add_argument("--seed", type=int, default=1, help="world seed (default 1)")
    p.add_argument("--index", type=int, default=0, help="which pole of the world (default 0)")
    p.add_argument("--prefix", type=_prefix, default="poles", help="topic prefix (default poles)")
    p.add_argument(
        "--sensors",
        choices=("basic", "full"),
        default="basic",
        help="basic: SDS011 + BME280 (default); full: every sensor model",
    )
    add_sensor_option(p)
    p.add_argument(
        "--rate", type=float, default=1.0, help="simulated seconds per real second (default 1)"
    )
    p.add_argument(
        "--sim-start", type=float, help="simulated epoch seconds at --sim-ref (default: now)"
    )
    p.add_argument(
        "--sim-ref",
        type=float,
        help="the time.monotonic() instant at which simulated time is --sim-start "
        "(default: when this process starts)",
    )
    _log_level(p, "WARNING")
    from host_sim import field

    field.add_parsers(sub)
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if hasattr(args, "run"):  # subcommands with their own module (host_sim/field.py)
        return asyncio.run(args.run(args))
    if args.cmd == "demo":
        return asyncio.run(demo(args))
    if args.cmd == "pole":
        return asyncio.run(run_one_pole(args))
    if args.cmd == "conformance":
        from host_sim.conformance import main as conformance

        return conformance(args.models, args.descriptor, args.json, args.time_limit)
    return 2


if __name__ == "__main__":
    sys.exit(main())

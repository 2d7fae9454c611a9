"""A field workbench on one laptop: a simulated controller and the city's side of it.

``pole-sim city --dir city``       the city's Mosquitto with pole-admin's passwords and
                                   ACL (no anonymous clients), a reader account for
                                   commissioning, and a trust list; it reloads itself
                                   when pole-admin adds a pole.
``pole-sim controller --root ctl`` a new, unprovisioned controller: its serial console
                                   on a pty for ``pole-admin provision --port``; once
                                   provisioned, its daemon starts with simulated sensors.

So a technician can rehearse docs/technician.md end to end before meeting a real pole.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: `pole-sim pole` starts without them (faster boots)
    from host_sim.controller import SimController

READER = "commissioning"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "controller",
        help="a simulated, unprovisioned pole controller with its console on a pty",
        description="Prints the console's device path for 'pole-admin provision --port'. "
        "After provisioning the pole's daemon starts (simulated sensors, real signing and "
        "MQTT). Ctrl-C stops it; run it again with the same --root to power it back on.",
    )
    c.add_argument("--root", type=Path, required=True, help="the controller's file system")
    c.add_argument("--seed", type=int, default=1, help="world seed (default 1)")
    c.add_argument("--tilt", type=float, help="fault: the pole leans this many degrees")
    c.add_argument(
        "--unplug", action="append", default=[], help="fault: a sensor's cable is loose (model)"
    )
    c.add_argument("--lamp-failed", action="store_true", help="fault: the lamp does not burn")
    add_sensor_option(c)
    c.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="how much to log (default WARNING)",
    )
    c.set_defaults(run=run_controller)
    y = sub.add_parser(
        "city",
        help="the city's broker (passwords, ACL) for rehearsing provisioning and commissioning",
        description="Starts Mosquitto with the passwd/acl files that 'pole-admin provision "
        "--broker-dir DIR/auth' writes, and a reader for 'pole-admin commission'.",
    )
    y.add_argument("--dir", type=Path, required=True, help="the city's files (created)")
    y.add_argument(
        "--port", type=int, default=18830, help="broker port (default 18830: 1883 is often taken)"
    )
    y.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="how much to log (default WARNING)",
    )
    y.set_defaults(run=run_city)
    sc = sub.add_parser(
        "scenario",
        help="replay situations that matter (dusk, heat wave, race, knocked pole, ...) and "
        "check what the city's verifier sees",
        description="Runs scenarios from the catalogue (docs/scenarios.md) against a broker "
        "(a Mosquitto of its own unless --broker is given) and prints a report table. Exit "
        "code 1 if any expectation fails.",
    )
    sc.add_argument("names", nargs="*", help="scenarios to run (default: all)")
    sc.add_argument("--list", action="store_true", help="list the scenarios and stop")
    sc.add_argument("--broker", help="mqtt://HOST:PORT of an existing broker")
    sc.add_argument("--workdir", type=Path, help="keep pole state here (default: a temp dir)")
    sc.add_argument(
        "--control", action="store_true", help="run without the faults: expectations should fail"
    )
    sc.add_argument(
        "--plots",
        type=Path,
        default=Path("scenario-plots"),
        help="where a picture of each scenario goes, <name>.svg (default ./scenario-plots)",
    )
    sc.add_argument("--no-plots", dest="plots", action="store_const", const=None,
                    help="no pictures")  # fmt: skip
    sc.add_argument(
        "--log-level",
        default="ERROR",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="how much to log (default ERROR)",
    )
    sc.set_defaults(run=run_scenarios)


def add_sensor_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sensor",
        action="append",
        default=[],
        metavar="MODEL",
        help="also plug in this sensor model with its simulator: any installed one, built-in "
        "or from a vendor's package (see pole-sim conformance for the list); repeatable",
    )


async def run_controller(a: argparse.Namespace) -> int:
    from host_sim.controller import SimController
    from host_sim.pole import sensor_simulator
    from host_sim.world import World

    try:  # now, not after provisioning: a typo should not wait for a technician
        for model in a.sensor:
            sensor_simulator(model)
    except ValueError as exc:
        print(f"pole-sim controller: {exc}", file=sys.stderr)
        return 2
    world = World(seed=a.seed).pole(0)
    if a.tilt is not None:
        world.tilt_deg = a.tilt
    world.lamp_failed = a.lamp_failed
    ctl = SimController(a.root, world, extra_sensors=tuple(a.sensor)).start_console()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    state = "provisioned: starting the daemon" if ctl.provisioned() else "waiting to be provisioned"
    print(f"controller console on {ctl.port} ({state})", flush=True)
    print(f"  pole-admin provision --port {ctl.port} --pole-id ... (see docs/technician.md)")
    while not ctl.provisioned() and not stop.is_set():
        await asyncio.sleep(0.2)
    if not stop.is_set():
        try:
            pole = ctl.boot()
        except ValueError as exc:
            ctl.close()
            raise SystemExit(f"pole-sim controller: {exc}") from None
        for model in a.unplug:
            _unplug(ctl, model)
        print(f"{pole.pole_id}: daemon running, publishing to {pole.config.mqtt.url}", flush=True)
        await pole.run(stop)
    ctl.close()
    return 0


def _unplug(ctl: SimController, model: str) -> None:
    pole = ctl.pole
    assert pole is not None
    if not pole.unplug(model):
        has = sorted(s.model for s in pole.config.sensors)
        raise SystemExit(f"--unplug {model}: not a sensor of this pole ({', '.join(has)})")


async def run_city(a: argparse.Namespace) -> int:
    from host_sim.broker import Mosquitto
    from provisioning.broker_auth import BrokerAuth, write_secret

    a.dir.mkdir(parents=True, exist_ok=True)
    auth = BrokerAuth(a.dir / "auth")
    secret = a.dir / f"{READER}.password"
    if not auth.has_user(READER) or not secret.exists():
        write_secret(secret, auth.add(READER, reader=True) + "\n")
    broker = Mosquitto(port=a.port, workdir=a.dir / "mosquitto")
    broker.conf.write_text(
        broker.base_config()
        + f"listener {broker.port} 127.0.0.1\n"
        + auth.mosquitto_config()
        + "persistence false\n"
        + f"log_dest file {broker.log}\n"
    )
    broker.start()
    print(f"city broker on {broker.url} (passwords and ACL in {auth.dir})")
    print(
        f"  provision with: --broker-url {broker.url} --broker-dir {auth.dir} "
        f"--trust-db {a.dir / 'trust.sqlite'}"
    )
    print(
        f"  commission with: --broker {broker.url} --trust {a.dir / 'trust.sqlite'} "
        f"--username {READER} --password-file {secret}",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    seen = auth.passwd.stat().st_mtime_ns
    try:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
            mtime = auth.passwd.stat().st_mtime_ns
            if mtime != seen and broker.proc is not None:
                seen = mtime
                os.kill(broker.proc.pid, signal.SIGHUP)  # Mosquitto rereads passwd and acl
                print("broker: credentials changed, reloaded", flush=True)
    finally:
        broker.close()
    return 0


async def run_scenarios(a: argparse.Namespace) -> int:
    import tempfile

    from host_sim import scenarios

    if a.list:
        for name, (summary, _) in scenarios.CATALOGUE.items():
            print(f"{name:<20} {summary}")
        return 0
    with contextlib.ExitStack() as stack:
        work = a.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        try:
            rows = await scenarios.run(a.names, a.broker, work, control=a.control, plots=a.plots)
        except ValueError as exc:
            print(f"pole-sim scenario: {exc}")
            return 2
    print()
    print(scenarios.format_table(rows), end="")
    failed = sum(not r.ok for r in rows)
    print(f"\n{len(rows) - failed} of {len(rows)} expectations met")
    return 1 if failed else 0

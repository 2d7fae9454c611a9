"""The pole daemon: sensors -> windows -> SenML -> COSE_Sign1 -> spool -> MQTT.

``Pole`` wires the pieces for one pole; ``main()`` is the ``pole-edge`` command on
the controller. The same ``Pole`` runs inside ``host_sim`` with simulated buses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

from edge import __version__, senml
from edge.clock import Clock
from edge.config import ConfigError, PoleConfig, SensorConfig, load_config
from edge.cose import Signer
from edge.descriptors import DescriptorError, SensorDescriptor, load_sensor
from edge.dp import discrete_laplace, epsilon_ratio
from edge.gate import CountBins, encode_bin
from edge.gate import bin_start as gate_bin_start
from edge.health import Health
from edge.ledger import BudgetLedger
from edge.manifest import encode_manifest, output_schema, personal_source
from edge.outbox import Outbox
from edge.publisher import Publisher
from edge.rotation import ANNOUNCEMENT
from edge.sensors import AGGREGATED, SensorRunner, driver_class
from edge.spool import Spool
from edge.state import PersistentCounter, load_identity
from edge.unique import UniqueCounter
from edge.watch import LampWatch, TiltWatch, commanded_by_schedule, commanded_from_file
from edge.window import Window, window_start

log = logging.getLogger("edge")

BusFactory = Callable[[SensorConfig, SensorDescriptor], object]


def linux_bus(sensor: SensorConfig, desc: SensorDescriptor) -> object:
    """Open the real bus a sensor hangs on: /dev/i2c-N or a serial port."""
    from edge.bus.linux import LinuxI2C, SerialUART

    if desc.bus == "i2c":
        if sensor.i2c_bus is None:
            raise ConfigError(f"sensor {sensor.name}: set i2c_bus (the N of /dev/i2c-N)")
        return LinuxI2C(sensor.i2c_bus)
    if desc.bus == "uart":
        if not sensor.port:
            raise ConfigError(f"sensor {sensor.name}: set port, e.g. /dev/ttyUSB0")
        return SerialUART(sensor.port, sensor.options.get("baud", desc.baud or 9600))
    raise ConfigError(f"sensor {sensor.name}: bus {desc.bus!r} needs a bus factory")


class Pole:
    """One pole's pipeline. ``open_bus`` decides where bytes come from (hardware or sim)."""

    def __init__(
        self,
        config: PoleConfig,
        open_bus: BusFactory = linux_bus,
        clock: Clock | None = None,
        lamp_commanded: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self.time = clock or Clock(sync_file=config.clock_sync_file)
        self.clock = self.time.wall
        self.health = Health()
        state = config.state_dir
        self.identity = load_identity(state, config.pole_id)
        self.signer = Signer(self.identity.seed, config.pole_id)
        self.spool = Spool(
            state / "spool.sqlite",
            max_bytes=config.spool_max_bytes,
            clock=self.time.wall,
            synchronous=config.spool_synchronous,
        )
        if self.spool.recovered_corrupt:
            self.health.raise_alarm("spool_recovered", "corrupt spool moved aside")
        if self.spool.volatile:
            self.health.raise_alarm("spool_unwritable", self.spool.volatile)
        self.outbox = Outbox(
            self.signer,
            PersistentCounter(state / "boot_counter"),
            self.spool,
            self.health,
            config.mqtt.topic_prefix,
            clock=self.time,
        )
        self.publisher = Publisher(
            config.mqtt,
            self.outbox,
            PersistentCounter(state / "bdseq"),
            self._birth_payload,
            self._death_payload,
            self.health,
        )
        self.window = Window(
            window_start(self.clock(), config.window_s, config.window_offset_s), config.window_s
        )
        self._health_now = asyncio.Event()
        self.health.listener = lambda _name: self._health_now.set()
        self.observers = self._watches(lamp_commanded)
        self.runners: list[SensorRunner] = []
        series: list[senml.Series] = []
        self.descriptors: list[tuple[str, SensorDescriptor]] = []
        self.unique: dict[str, UniqueCounter] = {}
        count_series: list[tuple[str, str]] = []
        for sc in config.sensors:
            desc = load_sensor(sc.model, config.hardware_dir)
            self.descriptors.append((sc.name, desc))
            personal = personal_source(desc)
            unique = None
            if personal is not None and config.privacy.unique_devices:
                self.unique[sc.name] = UniqueCounter()
                unique = (personal, self.unique[sc.name])
                count_series.append((sc.name, "unique_devices"))
            elif personal is None:
                count_series += [
                    (sc.name, k) for k, f in desc.fields.items() if f.privacy == "count"
                ]
            cls = driver_class(desc)
            self.runners.append(
                SensorRunner(
                    sc.name,
                    desc,
                    self._driver_factory(cls, sc, desc, open_bus),
                    self.health,
                    lambda: self.window,
                    observers=self.observers,
                    timeout_s=config.driver_timeout_s or None,
                    count_sink=None if personal else self._count,
                    unique=unique,
                )
            )
            for fname, f in desc.fields.items():
                if f.privacy in AGGREGATED:
                    series.append(senml.Series(sc.name, fname, f.senml, f.unit, f.resolution))
        self.schema = output_schema(self.descriptors, config.privacy, config.mqtt.topic_prefix)
        pv = config.privacy
        self.ledger = None
        noise = None
        if pv.mode == "dp":
            self.ledger = BudgetLedger(state / "privacy_ledger.sqlite", pv.daily_epsilon)
            noise = self._dp_noise
        self.bins = CountBins(count_series, pv.bin_s, pv.min_bin_s, pv.k, pv.round_to, noise)
        self.bins.start = gate_bin_start(self.clock(), pv.bin_s)
        self.encoder = senml.WindowPackEncoder(config.pole_id, series)
        self.windows_sent = 0
        self._send_pending_rotation()

    def _send_pending_rotation(self) -> None:
        """A key rotation announcement (signed by the previous key) goes out first."""
        pending = self.config.state_dir / ANNOUNCEMENT
        if pending.exists():
            try:
                self.spool.put(self.outbox.topic("rotate"), pending.read_bytes(), "rotate")
                pending.rename(pending.with_name(ANNOUNCEMENT + ".sent"))
            except (OSError, sqlite3.Error) as exc:
                log.error("key rotation announcement not queued yet (%s); retried next start", exc)
            else:
                log.info("key rotation announcement queued for the city")

    def _count(self, key: tuple, n: int) -> None:
        self.bins.add(key, n, self.clock())

    def _dp_noise(self, key: tuple, start: int, true: int) -> int:
        """Noise for one series of one bin, if the day's budget allows; else suppressed."""
        pv = self.config.privacy
        day = time.strftime("%Y-%m-%d", time.gmtime(start))
        if not self.ledger.spend(day, start, "/".join(key), pv.epsilon):
            self.health.count("dp_budget_refusals")
            return 0  # published as "<k": nothing about this bin leaves
        s, t = epsilon_ratio(pv.epsilon)
        return max(0, true + discrete_laplace(s, t))

    def close_bin(self) -> bytes:
        """Close the count bin: unique-device sets are counted and destroyed, counts are
        protected, and one pack with every count series leaves, detections or not."""
        for name, counter in self.unique.items():
            self.bins.add((name, "unique_devices"), counter.close(), self.clock())
        start, values = self.bins.close(self.clock())
        payload = encode_bin(self.config.pole_id, start, self.bins.bin_s, values)
        return self.outbox.post("counts", payload)

    async def _bins(self) -> None:
        if not self.bins.series:
            return
        while True:
            wait = self.bins.start + self.bins.bin_s - self.clock()
            await asyncio.sleep(max(0.0, wait) / self.time.rate)
            if self.bins.due(self.clock()):
                self.close_bin()

    def _manifest_payload(self) -> bytes:
        day = time.strftime("%Y-%m-%d", time.gmtime(self.clock()))
        remaining = self.ledger.remaining(day) if self.ledger else None
        bt = int(self.clock()) if self.time.valid() else 0
        return encode_manifest(
            self.config.pole_id,
            bt,
            self.config.window_s,
            self.descriptors,
            self.config.privacy,
            self.schema,
            remaining,
        )

    def _watches(self, lamp_commanded: Callable[[], bool] | None) -> list:
        """Alarm watches from the config: tilt for every LIS3DH, the lamp if configured."""
        cfg = self.config
        watches: list = [
            TiltWatch(self.health, s.name, cfg.tilt_max_deg)
            for s in cfg.sensors
            if s.model == "lis3dh"
        ]
        if cfg.lamp:
            if lamp_commanded is None:
                if cfg.lamp.get("commanded_file"):
                    lamp_commanded = commanded_from_file(cfg.lamp["commanded_file"])
                else:
                    on, _, off = cfg.lamp.get("schedule", "17:00-07:30").partition("-")
                    lamp_commanded = commanded_by_schedule(on, off, self.clock)
            watches.append(
                LampWatch(
                    self.health,
                    cfg.lamp.get("sensor", "ina219"),
                    lamp_commanded,
                    float(cfg.lamp["nominal_current"]),
                    self.time.monotonic,
                    debounce_s=float(cfg.lamp.get("debounce_s", 5.0)),
                )
            )
        return watches

    @staticmethod
    def _driver_factory(
        cls: type, sc: SensorConfig, desc: SensorDescriptor, open_bus: BusFactory
    ) -> Callable[[], object]:
        def make() -> object:
            bus = open_bus(sc, desc)
            kwargs = dict(sc.options)
            kwargs.pop("baud", None)
            if sc.address is not None:
                kwargs["address"] = sc.address
            return cls(bus, **kwargs)

        return make

    def _base(self) -> list[tuple[int, object]]:
        """bn and bt for a pack: bt is the wall time, or 0 ("now") if the clock is not valid."""
        bt = int(self.clock()) if self.time.valid() else 0
        return [(senml.BN, self.config.pole_id + "/"), (senml.BT, bt)]

    def _birth_payload(self, bdseq: int) -> bytes:
        sensors = ",".join(f"{r.name}:{r.desc.model}" for r in self.runners)
        return senml.encode_pack(
            [
                [*self._base(), (0, "bdSeq"), (2, bdseq)],
                [(0, "boot"), (2, self.outbox.boot)],
                [(0, "software"), (3, "lightpole-edge " + __version__)],
                [(0, "sensors"), (3, sensors)],
                [(0, "window"), (1, "s"), (2, self.config.window_s)],
                *self._location_records(),
            ]
        )

    def _location_records(self) -> list[list[tuple[int, object]]]:
        """RFC 8428 registers the units "lat" and "lon" (degrees, WGS84)."""
        if self.config.location is None:
            return []
        lat, lon = self.config.location
        return [
            [(0, "location/lat"), (1, "lat"), (2, lat)],
            [(0, "location/lon"), (1, "lon"), (2, lon)],
        ]

    def _death_payload(self, bdseq: int) -> bytes:
        return senml.encode_pack([[*self._base(), (0, "bdSeq"), (2, bdseq)]])

    def _health_payload(self) -> bytes:
        """Counters, sensor states and alarms, plus time/uptime and time/valid: with a valid
        clock this pairs wall time (bt) with uptime, which places earlier unsynced packs
        of the same boot on the time axis."""
        h = self.health
        h.counters["spool_depth"] = self.spool.depth()
        h.counters["spool_dropped"] = self.spool.dropped
        h.counters["published"] = self.publisher.published
        h.counters["replayed"] = self.publisher.replayed
        records = [
            [*self._base(), (0, "time/uptime"), (1, "s"), (2, round(self.time.uptime(), 3))],
            [(0, "time/valid"), (4, self.time.valid())],
            *h.records(),
        ]
        return senml.encode_pack(records)

    def close_window(self) -> bytes:
        """Close the current window, open the next, and post the closed one's pack."""
        closed = self.window
        now = self.clock()
        length = closed.length
        # After a clock jump (NTP sync after a power cut) start at the current window
        # instead of replaying every window in between.
        start = (
            closed.end
            if now < closed.end + length
            else window_start(now, length, self.config.window_offset_s)
        )
        self.window = Window(start, length)
        if self.time.valid():
            payload = self.encoder.encode(closed, closed.end)
        else:
            payload = self.encoder.encode(closed, 0, uptime=round(self.time.uptime(), 3))
        self.windows_sent += 1
        return self.outbox.post("data", payload)

    async def _windows(self) -> None:
        length = self.config.window_s
        while True:
            wait = self.window.end - self.clock()
            if wait > length:  # the clock went backwards: realign, keep the statistics
                self.window.start = window_start(self.clock(), length, self.config.window_offset_s)
                continue
            await asyncio.sleep(max(0.0, min(wait, length)) / self.time.rate)
            if self.clock() >= self.window.end:
                self.close_window()

    async def _health(self) -> None:
        """Every health_s, and at once when a new alarm is raised.

        The schedule is clock-aligned like the windows, half a window after this pole's
        window boundary: a district's poles (offsets spread by window_offset_s) then
        spread their health reports too, instead of all reporting together after a
        power cut brought them up at the same moment."""
        cfg = self.config
        offset = (cfg.window_offset_s + cfg.window_s // 2) % cfg.health_s
        while True:
            now = self.clock()
            wait = window_start(now, cfg.health_s, offset) + cfg.health_s - now
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: see SensorRunner._call
                async with asyncio.timeout(min(max(wait, 0.0), cfg.health_s) / self.time.rate):
                    await self._health_now.wait()
            self._health_now.clear()
            self.outbox.post("health", self._health_payload())

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (or cancelled); then send a clean death and close."""
        stop = stop or asyncio.Event()
        if self.clock() >= self.window.end:  # built a while before it ran: no stale window
            cfg = self.config
            self.window.start = window_start(self.clock(), cfg.window_s, cfg.window_offset_s)
        tasks = [asyncio.create_task(r.run(), name=f"sensor:{r.name}") for r in self.runners]
        tasks.append(asyncio.create_task(self._windows(), name="windows"))
        tasks.append(asyncio.create_task(self._health(), name="health"))
        tasks.append(asyncio.create_task(self._bins(), name="bins"))
        self.outbox.post("manifest", self._manifest_payload(), retain=True)
        pub = asyncio.create_task(self.publisher.run(), name="publisher")
        try:
            await stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.publisher.stop()
            try:
                await asyncio.wait_for(pub, 5)
            except (TimeoutError, asyncio.CancelledError):
                pub.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pub
            self.spool.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="pole-edge",
        description="The light-pole gateway daemon: reads the pole's sensors, aggregates and "
        "anonymises on the pole, signs (COSE_Sign1/Ed25519) and publishes over MQTT.",
    )
    ap.add_argument("--config", "-c", type=Path, required=True, help="the pole's TOML file")
    ap.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config(args.config)
        pole = Pole(config)
    except (ConfigError, DescriptorError, FileNotFoundError, PermissionError, ValueError) as exc:
        print(f"pole-edge: {exc}", file=sys.stderr)
        return 2

    async def _run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info(
            "pole %s up: %d sensors, window %ss, broker %s",
            config.pole_id,
            len(pole.runners),
            config.window_s,
            config.mqtt.url,
        )
        await pole.run(stop)

    asyncio.run(_run())
    return 0


if __name__ == "__main__":
    sys.exit(main())

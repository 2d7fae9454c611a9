"""The pole daemon: sensors -> windows -> SenML -> COSE_Sign1 -> spool -> transport.

``Pole`` wires the pieces for one pole; ``main()`` is the ``pole-edge`` command on
the controller. The same ``Pole`` runs inside ``host_sim`` with simulated buses.

Every message the pole sends is one of the kinds declared in edge/messages.py and is
built from those declarations. Every internal task (each sensor, windows, bins,
health, the transport) runs under one supervisor: a task that raises is logged,
counted, reported at once as the ``task_crashed`` alarm and restarted, so a pole never
looks alive while sending nothing. Under systemd the watchdog heartbeat is only sent
while windows are being sealed (edge/sdnotify.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

from edge import __version__, messages, senml
from edge.clock import Clock
from edge.config import ConfigError, PoleConfig, SensorConfig, load_config
from edge.cose import Signer
from edge.counting import Counting
from edge.descriptors import DescriptorError, SensorDescriptor, load_sensor
from edge.health import Health
from edge.lamptest import LampTest
from edge.manifest import encode_manifest, output_schema, personal_source
from edge.outbox import Outbox
from edge.rotation import ANNOUNCEMENT
from edge.sdnotify import Notifier, Progress
from edge.sensors import AGGREGATED, SensorRunner, driver_class
from edge.spool import Spool
from edge.state import PersistentCounter, StateLock, StateLocked, load_identity, read_private
from edge.supervisor import Supervisor
from edge.transport import Transport
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


def open_transport(config: PoleConfig, *args: object) -> Transport:
    """The transport the configuration names (``transport = "mqtt"`` or ``"file"``)."""
    if getattr(config, "transport", "mqtt") == "file":
        from edge.transport.filedrop import FileDropTransport

        return FileDropTransport(config.file_drop.dir, *args)
    from edge.transport.mqtt import MqttTransport

    if config.mqtt.password_file:  # refuse a missing or exposed password now, not per retry
        try:
            read_private(Path(config.mqtt.password_file))
        except OSError as exc:
            raise ConfigError(f"mqtt.password_file: {exc}") from None
    return MqttTransport(config.mqtt, *args)


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
        self.lock = StateLock(state)  # one daemon per state dir (StateLocked otherwise)
        try:
            self._build(open_bus, lamp_commanded)
        except BaseException:
            self.lock.release()
            raise

    def _build(self, open_bus: BusFactory, lamp_commanded: Callable[[], bool] | None) -> None:
        config = self.config
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
            clock=self.time,
        )
        self.transport = open_transport(
            config,
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
        self.descriptors = [
            (sc.name, load_sensor(sc.model, config.hardware_dir)) for sc in config.sensors
        ]
        self.counting = Counting(
            config.pole_id, self.descriptors, config.privacy, state, self.health
        )
        self.runners: list[SensorRunner] = []
        series: list[senml.Series] = []
        for sc, (_name, desc) in zip(config.sensors, self.descriptors, strict=True):
            personal = personal_source(desc)
            self.runners.append(
                SensorRunner(
                    sc.name,
                    desc,
                    self._driver_factory(driver_class(desc), sc, desc, open_bus),
                    self.health,
                    lambda: self.window,
                    observers=self.observers,
                    timeout_s=config.driver_timeout_s or None,
                    count_sink=None if personal else self._count,
                    unique=self.counting.unique_for(sc.name, personal),
                )
            )
            for fname, f in desc.fields.items():
                if f.privacy in AGGREGATED:
                    series.append(senml.Series(sc.name, fname, f.senml, f.unit, f.resolution))
        self.schema = output_schema(self.descriptors, config.privacy)
        self.encoder = senml.WindowPackEncoder(config.pole_id, series)
        self.lamp_test = self._lamp_test()
        self.windows_sent = 0
        # Two windows plus grace: after the clock steps back, two seals can be almost
        # 2 x window_s apart (docs/deploy.md). Real seconds, hence the rate.
        self.progress = Progress((2 * config.window_s + 30) / self.time.rate)
        self.supervisor = Supervisor(self.health, on_crash=lambda _n, _e: self._health_now.set())
        self._send_pending_rotation()

    @property
    def publisher(self) -> Transport:  # the name of 0.1, for callers that still use it
        return self.transport

    def _send_pending_rotation(self) -> None:
        """A key rotation announcement (signed by the previous key) goes out first."""
        pending = self.config.state_dir / ANNOUNCEMENT
        if pending.exists():
            try:
                self.spool.put("rotate", pending.read_bytes())
                pending.rename(pending.with_name(ANNOUNCEMENT + ".sent"))
            except (OSError, sqlite3.Error) as exc:
                log.error("key rotation announcement not queued yet (%s); retried next start", exc)
            else:
                log.info("key rotation announcement queued for the city")

    def _count(self, key: tuple, n: int) -> None:
        self.counting.add(key, n, self.clock())

    def close_bin(self) -> bytes:
        """Close the count bin and post its pack (every series, detections or not)."""
        return self.outbox.post("counts", self.counting.close(self.clock()))

    async def _bins(self) -> None:
        bins = self.counting.bins
        while True:
            await self.time.sleep_until(bins.end)
            if bins.due(self.clock()):
                self.close_bin()

    def _manifest_payload(self) -> bytes:
        return encode_manifest(
            self.config.pole_id,
            self._bt(),
            self.config.window_s,
            self.descriptors,
            self.config.privacy,
            self.schema,
            self.counting.remaining_today(self.clock()),
            self.counting.epsilon,
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

    def _lamp_test(self) -> LampTest | None:
        """The lamp test by day, when there is a lamp watch and a DALI bridge to switch the
        lamp with (a sensor whose driver can set the lamp's level)."""
        lamp = self.config.lamp
        watch = next((w for w in self.observers if isinstance(w, LampWatch)), None)
        bridge = next((r for r in self.runners if hasattr(driver_class(r.desc), "set_level")), None)
        if not lamp or not lamp.get("test_by_day", True) or watch is None or bridge is None:
            return None
        return LampTest(self.health, watch, bridge, test_s=float(lamp.get("test_s", 30.0)))

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

    def _bt(self) -> int:
        """Base time of a pack: the wall time, or 0 ("now", SenML relative time) when the
        clock is not valid: the pole never invents an absolute time."""
        return int(self.clock()) if self.time.valid() else 0

    def _birth_payload(self, bdseq: int) -> bytes:
        items: list[tuple[str, object]] = [
            ("bdSeq", bdseq),
            ("boot", self.outbox.boot),
            ("software", "lightpole-edge " + __version__),
            ("sensors", ",".join(f"{r.name}:{r.desc.model}" for r in self.runners)),
            ("window", self.config.window_s),
        ]
        if self.config.location is not None:  # RFC 8428 units "lat" and "lon" (WGS84)
            lat, lon = self.config.location
            items += [("location/lat", float(lat)), ("location/lon", float(lon))]
        return messages.pack(messages.BIRTH, self.config.pole_id, self._bt(), items)

    def _death_payload(self, bdseq: int) -> bytes:
        """Sealed when a session starts (it is the MQTT will): bt is the connect time."""
        return messages.pack(messages.DEATH, self.config.pole_id, self._bt(), [("bdSeq", bdseq)])

    def _health_payload(self) -> bytes:
        """Counters, sensor states and alarms, plus time/uptime and time/valid: with a valid
        clock this pairs wall time (bt) with uptime, which places earlier unsynced packs
        of the same boot on the time axis."""
        h = self.health
        h.counters["spool_depth"] = self.spool.depth()
        h.counters["spool_dropped"] = self.spool.dropped
        h.counters["published"] = self.transport.published
        h.counters["replayed"] = self.transport.replayed
        items = [
            ("time/uptime", float(round(self.time.uptime(), 3))),
            ("time/valid", self.time.valid()),
            *h.items(),
        ]
        return messages.pack(messages.HEALTH, self.config.pole_id, self._bt(), items)

    def close_window(self, now: float | None = None) -> bytes:
        """Seal the current window and open the next. With ``now`` before the window's end
        (a clean stop), the window is sealed early and says how much it covers."""
        closed = self.window
        if now is None:
            now = self.clock()
        early = now < closed.end
        length = closed.length
        # After a clock jump (NTP sync after a power cut) start at the current window
        # instead of replaying every window in between.
        start = (
            closed.end
            if now < closed.end + length
            else window_start(now, length, self.config.window_offset_s)
        )
        self.window = Window(start, length)
        covered = closed.covered(now if early else None)
        if covered == length:
            covered = None  # a full window; the encoder writes its length
        if self.time.valid():
            end = int(now) if early else closed.end
            payload = self.encoder.encode(closed, end, covered=covered)
        else:
            uptime = float(round(self.time.uptime(), 3))
            payload = self.encoder.encode(closed, 0, uptime=uptime, covered=covered)
        self.windows_sent += 1
        self.progress.mark()
        return self.outbox.post("data", payload)

    async def _windows(self) -> None:
        length = self.config.window_s
        while True:
            wait = self.window.end - self.clock()
            if wait > length:  # the clock went backwards: realign, keep the statistics
                self.window.start = window_start(self.clock(), length, self.config.window_offset_s)
                continue
            await self.time.sleep_until(min(self.window.end, self.clock() + length))
            if self.clock() >= self.window.end:
                self.close_window()

    async def _health(self) -> None:
        """Every health_s, and at once when an alarm is raised or a task crashed.

        The schedule is clock-aligned like the windows, half a window after this pole's
        window boundary: a district's poles (offsets spread by window_offset_s) then
        spread their health reports too, instead of all reporting together after a
        power cut brought them up at the same moment."""
        cfg = self.config
        offset = (cfg.window_offset_s + cfg.window_s // 2) % cfg.health_s
        while True:
            now = self.clock()
            due = window_start(now, cfg.health_s, offset) + cfg.health_s
            wait = min(max(due - now, 0.0), cfg.health_s) / self.time.rate
            try:
                async with asyncio.timeout(wait):  # not wait_for: see SensorRunner._call
                    await self._health_now.wait()
            except TimeoutError:
                pass
            self._health_now.clear()
            self.outbox.post("health", self._health_payload())

    def _start(self) -> None:
        """Open the first window and bin where the pole really starts, so both say how
        much they cover, and post the manifest."""
        now = self.clock()
        cfg = self.config
        self.window = Window(
            window_start(now, cfg.window_s, cfg.window_offset_s), cfg.window_s, opened=now
        )
        self.counting.bins.open(now)
        self.outbox.post("manifest", self._manifest_payload())

    def _seal_partial(self) -> None:
        """At a clean stop: the window so far, and the bin if it covers at least the
        shortest bin the privacy settings allow (a shorter one would say too precisely
        when people passed; its counts are dropped instead)."""
        now = self.clock()
        try:
            if self.window.covered(now) > 0:
                self.close_window(now)
            bins = self.counting.bins
            if self.counting.active and bins.end is not None:
                if bins.covered(now) >= bins.min_bin_s:
                    self.close_bin()
                else:
                    log.info(
                        "stopping: the last %d s of counts are not published (too short)",
                        bins.covered(now),
                    )
        except Exception:  # never let a failing last pack prevent a clean stop
            log.exception("could not seal the last window or bin at stop")

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (or cancelled); then seal what was collected, deliver
        what is pending, send a clean death and close."""
        stop = stop or asyncio.Event()
        sup = self.supervisor
        self._start()
        for r in self.runners:
            sup.start(f"sensor:{r.name}", r.run)
        sup.start("windows", self._windows)
        sup.start("health", self._health)
        if self.counting.active:
            sup.start("bins", self._bins)
        if self.lamp_test is not None:
            sup.start("lamp_test", self.lamp_test.run)
        sup.start("transport", self.transport.run)
        notifier = Notifier()
        if notifier.enabled:
            sup.start("watchdog", lambda: notifier.heartbeat(self.progress))
            notifier.ready(f"pole {self.config.pole_id}: {len(self.runners)} sensors")
        try:
            await stop.wait()
        finally:
            notifier.stopping()
            names = [n for n in sup.names if n != "transport"]
            await sup.stop(*names)
            self._seal_partial()
            self.transport.stop()
            if not await sup.join("transport", timeout=5):
                log.warning("transport did not finish within 5 s; stopping it")
            await sup.stop()
            notifier.close()
            self.close()

    def close(self) -> None:
        """Close the spool and let another daemon have the state dir."""
        self.spool.close()
        self.lock.release()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="pole-edge",
        description="The light-pole gateway daemon: reads the pole's sensors, aggregates and "
        "anonymises on the pole, signs (COSE_Sign1/Ed25519) and publishes over MQTT.",
    )
    ap.add_argument("--config", "-c", type=Path, required=True, help="the pole's TOML file")
    ap.add_argument(
        "--check",
        action="store_true",
        help="validate the configuration, print what would run, and exit (0: fine, 2: not); "
        "opens no bus, writes nothing, connects nowhere: safe beside a running daemon",
    )
    ap.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        type=str.upper,
        help="how much to log (default INFO)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config(args.config)
        if args.check:
            from edge.check import check

            lines, problems = check(config)
            print("\n".join(lines))
            for p in problems:
                print(f"pole-edge: {p}", file=sys.stderr)
            print("configuration OK" if not problems else f"{len(problems)} problem(s)")
            return 0 if not problems else 2
        pole = Pole(config)
    except (
        ConfigError,
        DescriptorError,
        FileNotFoundError,
        PermissionError,
        StateLocked,
        ValueError,
    ) as exc:
        print(f"pole-edge: {exc}", file=sys.stderr)
        return 2

    async def _run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info(
            "pole %s up: %d sensors, window %ss, transport %s",
            config.pole_id,
            len(pole.runners),
            config.window_s,
            getattr(config, "transport", "mqtt"),
        )
        await pole.run(stop)

    asyncio.run(_run())
    return 0


if __name__ == "__main__":
    sys.exit(main())

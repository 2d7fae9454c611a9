"""A simulated pole: host_sim devices behind the buses, the real ``edge.daemon.Pole`` on top.

The SDS011 sits on a real pseudo-terminal that the daemon opens with pyserial,
exactly as it would open /dev/ttyUSB0; the BME280 sits on a simulated I2C bus
(the one thing that cannot exist here without hardware).

Any other installed sensor model, built-in or from a vendor's package, rides along
with ``extra_sensors`` (``pole-sim pole|controller|demo --sensor MODEL``): its
descriptor names its simulator, which is fed by the world where the world measures
the same thing and by the descriptor's typical values otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import math
import random
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from edge.clock import Clock
from edge.config import PoleConfig, SensorConfig
from edge.daemon import Pole, linux_bus
from edge.descriptors import DescriptorError, SensorDescriptor, load_sensor
from edge.state import KEY_FILE, Identity, create_identity, load_identity
from host_sim.devices.bme280 import BME280Sim
from host_sim.devices.d4i import D4iSim
from host_sim.devices.ina219 import INA219Sim
from host_sim.devices.ld2450 import LD2450Sim, Street
from host_sim.devices.lis3dh import LIS3DHSim
from host_sim.devices.pms5003 import PMS5003Sim
from host_sim.devices.probe_sniffer import ProbeSnifferSim, crowd
from host_sim.devices.sds011 import SDS011Sim
from host_sim.devices.sht31 import SHT31Sim
from host_sim.i2c import SimI2C
from host_sim.serial_pty import PtySerial
from host_sim.world import PoleWorld

BME280_ADDR = 0x76
SHT31_ADDR = 0x44
LIS3DH_ADDR = 0x18
INA219_ADDR = 0x40
SENSOR_SETS = ("basic", "full")
# The world's measurement that feeds a built-in model added with extra_sensors.
WORLD_SOURCES = {
    "bme280": "climate",
    "sht31": "climate",
    "sds011": "air",
    "pms5003": "air",
    "lis3dh": "tilt",
    "ina219": "lamp_supply",
    "ina226": "lamp_supply",
    "d4i": "luminaire",
}
# Models plugged into every SimPole built in this context that is not given
# extra_sensors itself (how ``pole-sim controller --sensor`` reaches the pole that
# SimController.boot builds).


def sensor_simulator(model: str) -> tuple[SensorDescriptor, type]:
    """The descriptor and simulator class of an installed ``model``; ValueError with a
    sentence on what is missing."""
    try:
        desc = load_sensor(model)
    except DescriptorError as exc:
        raise ValueError(f"--sensor {model}: {exc}") from None
    if not desc.simulator:
        raise ValueError(
            f'--sensor {model}: its descriptor ({desc.source}) names no "simulator", '
            "so a simulated pole cannot carry it"
        )
    module, _, name = desc.simulator.partition(":")
    try:
        return desc, getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(
            f"--sensor {model}: cannot load its simulator {desc.simulator!r} ({exc}); "
            "is its package installed?"
        ) from None


def ensure_identity(state_dir: Path, pole_id: str) -> Identity:
    """The pole's key, generated in its own state directory on first use."""
    if (state_dir / KEY_FILE).exists():
        return load_identity(state_dir, pole_id)
    return create_identity(state_dir, pole_id)


class SimPole:
    def __init__(
        self,
        pole_id: str,
        state_dir: Path,
        broker_url: str,
        world: PoleWorld,
        window_s: int = 5,
        health_s: int | None = None,
        clock: Clock | None = None,
        topic_prefix: str = "poles",
        sensors: str = "basic",
        driver_timeout_s: float = 2.0,
        pty_tick: float = 0.05,
        spool_synchronous: str = "FULL",
        config_overrides: dict | None = None,
        probe_legal_basis: str = "",
        only: set[str] | None = None,
        extra_sensors: Sequence[str] | None = None,
    ) -> None:
        """``config_overrides``: keys merged into the pole's config (tables such as ``mqtt``
        and ``lamp`` merge key by key), e.g. what provisioning wrote: credentials, location, board.
        ``probe_legal_basis``: also run the Wi-Fi probe sniffer (full set only), which a
        pole does only with a stated legal basis (docs/privacy.md); off by default.
        ``only``: keep just these sensor models of the set (the simulators still run).
        ``extra_sensors``: more models (built-in or installed from a package) with their
        simulators. Raises ValueError with a sentence for a model that cannot be added."""
        self.pole_id = pole_id
        self.world = world
        self.identity = ensure_identity(state_dir, pole_id)
        if sensors not in SENSOR_SETS:
            raise ValueError(f"sensors must be one of {SENSOR_SETS}")
        self.i2c = SimI2C()
        self.bme280 = BME280Sim(world.climate)
        self.i2c.attach(BME280_ADDR, self.bme280)
        self.sds011 = SDS011Sim(world.air)
        self.pty = PtySerial(self.sds011, tick=pty_tick)
        self.ptys = [self.pty]
        sensor_cfg: list[dict] = [
            {"model": "sds011", "port": self.pty.path},
            {"model": "bme280", "i2c_bus": "sim", "address": BME280_ADDR},
        ]
        extra: dict = {}
        self.d4i = None
        if sensors == "full":
            self.sht31 = SHT31Sim(world.climate)
            self.lis3dh = LIS3DHSim(world.tilt)
            self.ina219 = INA219Sim(world.lamp_supply)
            self.d4i = D4iSim(world.luminaire)
            self.d4i.on_level = lambda level: setattr(world, "dali_level", level)
            self.i2c.attach(SHT31_ADDR, self.sht31)
            self.i2c.attach(LIS3DH_ADDR, self.lis3dh)
            self.i2c.attach(INA219_ADDR, self.ina219)
            sensor_cfg += [
                {"model": "sht31", "i2c_bus": "sim", "address": SHT31_ADDR},
                {"model": "lis3dh", "i2c_bus": "sim", "address": LIS3DH_ADDR},
                {"model": "ina219", "i2c_bus": "sim", "address": INA219_ADDR},
                {"model": "d4i", "port": "sim"},
            ]
            self.pms5003 = PMS5003Sim(world.air)
            self.street = Street(6, 2, seed=zlib.crc32(pole_id.encode()), clock=time.monotonic)
            self.ld2450 = LD2450Sim(self.street)
            self.phones = crowd(25, seed=zlib.crc32(pole_id.encode()))
            self.sniffer = ProbeSnifferSim(lambda: self.phones)
            serial = [("pms5003", self.pms5003), ("ld2450", self.ld2450)]
            if probe_legal_basis:
                serial.append(("probe_sniffer", self.sniffer))
                extra["privacy"] = {"legal_basis": probe_legal_basis}
            for model, dev in serial:
                port = PtySerial(dev, tick=pty_tick)
                self.ptys.append(port)
                sensor_cfg.append({"model": model, "port": port.path})
            extra["lamp"] = {
                "sensor": "ina219",
                "nominal_current": world.nominal_current,
                "debounce_s": 2.0,
            }
        if only is not None:
            sensor_cfg = [c for c in sensor_cfg if c["model"] in only]
            if "lamp" in extra and "ina219" not in only:
                del extra["lamp"]
        self.extra: dict[str, object] = {}  # model -> simulator of each extra sensor
        self._bridges: dict[str, object] = {}
        models = tuple(extra_sensors or ())
        try:
            for model in models:
                present = {c["model"] for c in sensor_cfg}
                sensor_cfg.append(self._add_sensor(model, present, pty_tick))
        except ValueError:
            for port in self.ptys:
                port.close()
            raise
        cfg: dict = {
            "pole_id": pole_id,
            "state_dir": str(state_dir),
            "window_s": window_s,
            "health_s": health_s or max(window_s * 3, 10),
            "mqtt": {"url": broker_url, "topic_prefix": topic_prefix, "will_delay_s": 0},
            "sensors": sensor_cfg,
            "driver_timeout_s": driver_timeout_s,
            "spool_synchronous": spool_synchronous,
            **extra,
        }
        for key, value in (config_overrides or {}).items():  # tables merge key by key
            merge = isinstance(value, dict) and isinstance(cfg.get(key), dict)
            cfg[key] = {**cfg[key], **value} if merge else value
        self.config_dict = cfg  # what the pole was configured with, e.g. for an audit
        self.config = PoleConfig(cfg)
        commanded = getattr(world, "lamp_commanded", None)
        self.pole = Pole(
            self.config, open_bus=self._open_bus, clock=clock, lamp_commanded=commanded
        )

    def _add_sensor(self, model: str, present: set[str], pty_tick: float) -> dict:
        """Plug ``model``'s simulator into this pole; its [[sensors]] entry."""
        if model in present:
            raise ValueError(f"--sensor {model}: this pole already has one")
        desc, sim_cls = sensor_simulator(model)
        sim = sim_cls(self._source(desc))
        self.extra[model] = sim
        if desc.bus == "i2c":
            taken = set(self.i2c.scan())
            free = [a for a in [desc.default_address, *desc.addresses] if a is not None]
            address = next((a for a in free if a not in taken), None)
            if address is None:
                raise ValueError(f"--sensor {model}: every address it can have is taken")
            self.i2c.attach(address, sim)
            return {"model": model, "i2c_bus": "sim", "address": address}
        if desc.bus == "uart":
            port = PtySerial(sim, tick=pty_tick)
            self.ptys.append(port)
            return {"model": model, "port": port.path}
        if desc.bus == "bridge":
            self._bridges[model] = sim
            return {"model": model, "port": "sim"}
        raise ValueError(f"--sensor {model}: a simulated pole has no {desc.bus!r} bus")

    def _source(self, desc: SensorDescriptor) -> Callable[[], dict]:
        """What a simulator of ``desc`` measures: the world's reading of the same thing for
        built-in models, else the descriptor's typical values (``conformance.source``)
        drifting slowly and a little noisy, within the field's range."""
        if desc.model in WORLD_SOURCES:
            return getattr(self.world, WORLD_SOURCES[desc.model])
        typical = dict(
            desc.conformance.get("source")
            or {
                k: (f.min + f.max) / 2 / f.scale
                for k, f in desc.fields.items()
                if f.min is not None and f.max is not None
            }
        )
        rng = random.Random(zlib.crc32(f"{self.pole_id}/{desc.model}".encode()))
        clock = self.world.world.clock

        def source() -> dict:
            drift = 1 + 0.05 * math.sin(2 * math.pi * clock() / 600)
            out = {}
            for k, v in typical.items():
                f = desc.fields.get(k)
                if isinstance(v, float) and f is not None:
                    noise = max(abs(v) * 0.002, f.resolution / f.scale)
                    v = v * drift + rng.gauss(0, noise)
                    lo = -math.inf if f.min is None else f.min / f.scale
                    hi = math.inf if f.max is None else f.max / f.scale
                    v = min(max(v, lo), hi)
                out[k] = v
            return out

        return source

    def unplug(self, model: str) -> bool:
        """The cable of ``model``'s sensor comes loose; False if the pole has no such sensor."""
        for sc in self.config.sensors:
            if sc.model != model:
                continue
            if sc.address is not None:
                self.i2c.unplug(sc.address)
                return True
            for port in self.ptys:
                if port.path == sc.port:
                    port.unplug()
                    return True
            bridge = self._bridges.get(model) or (self.d4i if model == "d4i" else None)
            if bridge is not None and hasattr(bridge, "no_reply"):
                bridge.no_reply = True
                return True
        return False

    def _open_bus(self, sensor: SensorConfig, desc: SensorDescriptor) -> object:
        if desc.bus == "i2c":
            return self.i2c
        if desc.bus == "bridge":  # the D4i bridge contract: read_bank(bank) -> bytes
            return self._bridges.get(sensor.model, self.d4i)
        return linux_bus(sensor, desc)  # real pyserial on the pty

    async def run(self, stop: asyncio.Event) -> None:
        pty_tasks = [asyncio.create_task(p.serve()) for p in self.ptys]
        try:
            await self.pole.run(stop)
        finally:
            for t in pty_tasks:
                t.cancel()
            for t in pty_tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t

"""A simulated pole: host_sim devices behind the buses, the real ``edge.daemon.Pole`` on top.

The SDS011 sits on a real pseudo-terminal that the daemon opens with pyserial,
exactly as it would open /dev/ttyUSB0; the BME280 sits on a simulated I2C bus
(the one thing that cannot exist here without hardware).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from edge.clock import Clock
from edge.config import PoleConfig, SensorConfig
from edge.daemon import Pole, linux_bus
from edge.descriptors import SensorDescriptor
from edge.state import KEY_FILE, Identity, create_identity, load_identity
from host_sim.devices.bme280 import BME280Sim
from host_sim.devices.sds011 import SDS011Sim
from host_sim.i2c import SimI2C
from host_sim.serial_pty import PtySerial
from host_sim.world import PoleWorld

BME280_ADDR = 0x76


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
    ) -> None:
        self.pole_id = pole_id
        self.identity = ensure_identity(state_dir, pole_id)
        self.i2c = SimI2C()
        self.bme280 = BME280Sim(world.climate)
        self.i2c.attach(BME280_ADDR, self.bme280)
        self.sds011 = SDS011Sim(world.air)
        self.pty = PtySerial(self.sds011)
        self.config = PoleConfig(
            {
                "pole_id": pole_id,
                "state_dir": str(state_dir),
                "window_s": window_s,
                "health_s": health_s or max(window_s * 3, 10),
                "mqtt": {"url": broker_url, "topic_prefix": topic_prefix, "will_delay_s": 0},
                "sensors": [
                    {"model": "sds011", "port": self.pty.path},
                    {"model": "bme280", "i2c_bus": "sim", "address": BME280_ADDR},
                ],
            }
        )
        self.pole = Pole(self.config, open_bus=self._open_bus, clock=clock)

    def _open_bus(self, sensor: SensorConfig, desc: SensorDescriptor) -> object:
        if desc.bus == "i2c":
            return self.i2c
        return linux_bus(sensor, desc)  # real pyserial on the pty

    async def run(self, stop: asyncio.Event) -> None:
        pty_task = asyncio.create_task(self.pty.serve())
        try:
            await self.pole.run(stop)
        finally:
            pty_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pty_task

"""A simulated pole controller, before and after provisioning.

Its serial console is a real pseudo-terminal (the laptop opens ``port`` with pyserial,
as it would open /dev/ttyUSB0), answered by the real ``edge.console`` agent; its
file system is a directory (``root/etc/lightpole/pole.toml``,
``root/var/lib/lightpole``). Once provisioned it boots the real daemon from the
configuration and key that provisioning left there, with simulated sensors behind
the buses, like a controller whose service starts when ``provisioned.json`` appears.
Tests and ``pole-sim controller`` use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import tty
from pathlib import Path

from edge.config import load_config
from edge.console import PROVISIONED_FILE, ConsoleAgent
from host_sim.pole import SimPole
from host_sim.world import PoleWorld, World

BOARD_SENSORS = {"sim-pole": "basic", "sim-pole-full": "full"}


class SimController:
    def __init__(
        self, root: Path, world: PoleWorld | None = None, extra_sensors: tuple[str, ...] = ()
    ) -> None:
        """``extra_sensors``: more sensor models (built-in or from an installed package)
        that the booted pole carries, with their simulators (pole-sim controller --sensor)."""
        self.extra_sensors = tuple(extra_sensors)
        self.root = root
        self.state_dir = root / "var" / "lib" / "lightpole"
        self.config_path = root / "etc" / "lightpole" / "pole.toml"
        self.world = world or World(seed=1).pole(0)
        self.agent = ConsoleAgent(self.state_dir, self.config_path)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # a raw line: frames pass untouched, nothing echoed
        self.port = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.pole: SimPole | None = None
        # Fault injection for tests: carry out request number ``swallow_at`` (1-based) but
        # never answer it, as if the cable were pulled right after the controller acted.
        self.swallow_at: int | None = None
        self.requests = 0
        self.swallowed = threading.Event()
        answer = self.agent.handle

        def handle(line: str) -> bytes | None:
            out = answer(line)
            if out is not None:
                self.requests += 1
                if self.requests == self.swallow_at:
                    self.swallowed.set()
                    return None
            return out

        self.agent.handle = handle  # type: ignore[method-assign]

    def start_console(self) -> SimController:
        self._thread = threading.Thread(
            target=self.agent.serve_fd, args=(self._master, self._stop), daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the console and close both ends of its pty (a pulled cable); idempotent."""
        self._stop.set()
        if self._thread:
            self._thread.join(2)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._master = self._slave = -1

    def provisioned(self) -> bool:
        return (self.state_dir / PROVISIONED_FILE).exists()

    def boot(self, broker_url: str | None = None) -> SimPole:
        """The daemon, as configured by provisioning (``broker_url`` overrides its URL,
        e.g. when the test broker's port changed)."""
        if not self.provisioned():
            raise RuntimeError(f"{self.root}: not provisioned yet (no {PROVISIONED_FILE})")
        cfg = load_config(self.config_path)
        sensors = BOARD_SENSORS.get(cfg.board or "", "basic")
        mqtt = {
            "username": cfg.mqtt.username,
            "password_file": cfg.mqtt.password_file,
            "topic_prefix": cfg.mqtt.topic_prefix,
        }
        if cfg.mqtt.ca_file:
            mqtt["ca_file"] = cfg.mqtt.ca_file
        overrides: dict = {"mqtt": mqtt, "board": cfg.board}
        if cfg.location:
            overrides["location"] = {"lat": cfg.location[0], "lon": cfg.location[1]}
        self.pole = SimPole(
            cfg.pole_id,
            cfg.state_dir,
            broker_url or cfg.mqtt.url,
            self.world,
            window_s=cfg.window_s,
            sensors=sensors,
            config_overrides=overrides,
            extra_sensors=self.extra_sensors,
        )
        return self.pole

    async def run(self, stop: asyncio.Event, broker_url: str | None = None) -> None:
        """Wait until provisioned, then run the daemon until ``stop``."""
        while not self.provisioned() and not stop.is_set():
            await asyncio.sleep(0.2)
        if not stop.is_set():
            await self.boot(broker_url).run(stop)

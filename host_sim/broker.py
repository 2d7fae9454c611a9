"""Start a real MQTT broker for tests, demos and fleets, and clean it up afterwards.

Mosquitto when installed (the broker the integration tests require), on a free
loopback port with a generated config; otherwise, for the demo only, amqtt's
pure-Python broker embedded in this process.

By default the broker is open (anonymous clients, no ACL), which is what most tests
want. ``Mosquitto(auth=BrokerAuth(...))`` runs it as the city does: passwords, one ACL
section per account, client ids bound to user names and a packet size limit, all from
``BrokerAuth.mosquitto_config()``; ``reload()`` rereads those files after a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Protocol


class AuthConfig(Protocol):
    """What ``provisioning.broker_auth.BrokerAuth`` offers: mosquitto.conf lines."""

    def mosquitto_config(self) -> str: ...


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"broker did not listen on 127.0.0.1:{port} within {timeout}s")


class Mosquitto:
    """A Mosquitto process on 127.0.0.1:<port>; ``stop()``/``start()`` simulate outages.

    Args:
        port: the loopback port (default: a free one).
        extra_config: more mosquitto.conf lines, appended last.
        workdir: where the config, log and persistence go (default: a temporary folder).
        persistent: keep sessions and retained messages across ``stop()``/``start()``.
        auth: a ``BrokerAuth`` (or anything with ``mosquitto_config()``): no anonymous
            clients, its passwd and ACL files, client ids bound to user names.
        log_all: log every packet (``log_type all``), to read in ``self.log``.
    """

    def __init__(
        self,
        port: int | None = None,
        extra_config: str = "",
        workdir: Path | None = None,
        persistent: bool = False,
        *,
        auth: AuthConfig | None = None,
        log_all: bool = False,
    ) -> None:
        exe = mosquitto_path()
        if exe is None:
            raise FileNotFoundError(
                "mosquitto is not installed: run 'sudo apt-get install mosquitto' "
                "(./run test does this for you)"
            )
        self.exe = exe
        self.port = port or free_port()
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="mosq-")
        self.dir = workdir or Path(self._tmp.name)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        persistence = (
            f"persistence true\npersistence_location {self.dir}/\n"
            if persistent
            else "persistence false\n"
        )
        access = auth.mosquitto_config() if auth is not None else "allow_anonymous true\n"
        self.conf.write_text(
            self.base_config()
            + f"listener {self.port} 127.0.0.1\n"
            + access
            + persistence
            + "set_tcp_nodelay true\n"
            "max_queued_messages 100000\n"
            f"log_dest file {self.log}\n" + ("log_type all\n" if log_all else "") + extra_config
        )
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @staticmethod
    def base_config() -> str:
        """Started as root, Mosquitto drops to the 'mosquitto' user and then cannot read
        the test's files (keys, password file): keep the starting user instead."""
        if os.geteuid() == 0:
            return "user root\n"
        return ""

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            raise
        return self

    def reload(self) -> None:
        """Reread the password and ACL files (SIGHUP), as after 'pole-admin broker add'.
        Returns once Mosquitto has logged the reload when it logs to ``self.log``."""
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError("the broker is not running")
        before = self.log.stat().st_size if self.log.exists() else 0
        os.kill(self.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), self.log.open("rb") as f:
                f.seek(before)
                if b"Reloading config" in f.read():
                    return
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class EmbeddedBroker:
    """amqtt in this process: for the demo on machines without Mosquitto, not for load."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._broker = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def start(self) -> None:
        import logging

        from amqtt.broker import Broker

        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.ERROR)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        self._broker = Broker(config)
        await self._broker.start()

    async def stop(self) -> None:
        if self._broker:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._broker.shutdown(), 5)

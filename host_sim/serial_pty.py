"""Simulated serial devices on real pseudo-terminals, so pyserial opens them unchanged.

A UART device model is any object with:

    BAUD: int                               # nominal baud rate (informative on a pty)
    def receive(self, data: bytes) -> None  # bytes the host wrote to the device
    def poll(self, now: float) -> bytes     # bytes the device has emitted by ``now``

``PtySerial`` puts a model behind ``/dev/pts/N``; ``LoopbackUART`` gives the same
model to a driver in memory (``machine.UART`` contract) for fast unit tests.
Fault injection lives in the models (or in ``host_sim.faults``), not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import tty
from typing import Protocol


class UARTDevice(Protocol):
    BAUD: int

    def receive(self, data: bytes) -> None: ...
    def poll(self, now: float) -> bytes: ...


class PtySerial:
    """A real pty pair: the driver opens ``path`` with pyserial; the model sits on the master.

    Run ``serve()`` as an asyncio task; it moves bytes every ``tick`` seconds.
    ``unplug()`` stops all traffic (a silent, dead sensor); ``plug()`` resumes.
    """

    def __init__(self, device: UARTDevice, tick: float = 0.05, clock=time.monotonic) -> None:
        self.device = device
        self.tick = tick
        self.clock = clock
        self.master_fd, self._slave_fd = os.openpty()
        # Raw before anyone opens it: no echo of device output back into the model,
        # no newline translation of binary frames.
        tty.setraw(self._slave_fd)
        os.set_blocking(self.master_fd, False)
        self.path = os.ttyname(self._slave_fd)
        self.connected = True
        self.bytes_out = 0

    def unplug(self) -> None:
        self.connected = False

    def plug(self) -> None:
        self.connected = True

    def pump(self) -> None:
        """Move pending bytes once in each direction (also usable without asyncio)."""
        try:
            data = os.read(self.master_fd, 4096)
        except (BlockingIOError, OSError):
            data = b""
        if data and self.connected:
            self.device.receive(data)
        out = self.device.poll(self.clock())
        if out and self.connected:
            with contextlib.suppress(BlockingIOError, OSError):
                self.bytes_out += os.write(self.master_fd, out)

    async def serve(self) -> None:
        try:
            while True:
                self.pump()
                await asyncio.sleep(self.tick)
        finally:
            self.close()

    def close(self) -> None:
        for fd in (self.master_fd, self._slave_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class LoopbackUART:
    """An in-memory ``machine.UART`` wired to a device model; time is passed in explicitly."""

    def __init__(self, device: UARTDevice, now: float = 0.0) -> None:
        self.device = device
        self.now = now
        self._buf = bytearray()
        self.connected = True

    def advance(self, seconds: float) -> None:
        """Let simulated time pass and collect what the device sent meanwhile."""
        self.now += seconds
        out = self.device.poll(self.now)
        if self.connected:
            self._buf += out

    def inject(self, data: bytes) -> None:
        """Put arbitrary bytes on the line (noise, truncated or misaligned frames)."""
        self._buf += data

    def any(self) -> int:
        return len(self._buf)

    def read(self, nbytes: int = -1) -> bytes | None:
        if not self._buf:
            return None
        if nbytes < 0 or nbytes >= len(self._buf):
            data, self._buf = bytes(self._buf), bytearray()
        else:
            data, self._buf = bytes(self._buf[:nbytes]), self._buf[nbytes:]
        return data

    def write(self, buf: bytes) -> int:
        if self.connected:
            self.device.receive(bytes(buf))
        return len(buf)

"""A simulated I2C bus with MicroPython's ``machine.I2C`` methods.

Each attached device is an object with ``write(data: bytes)`` (a plain write, the
first byte usually a register pointer) and ``read(n: int) -> bytes`` (a plain read
continuing from the device's own pointer). Register reads are, as on the wire, a
write of the pointer followed by a read; so a model that gets auto-increment and
pointer semantics right serves any driver written from the datasheet.

A device may raise ``OSError`` itself to NACK (for example while measuring).
An address with no device NACKs with ``OSError(errno.ENODEV)``, as MicroPython does.
A write to address 0x00 is the I2C general call: every plugged device with a
``general_call(data) -> bool`` method sees it, and it is ACKed if one of them takes it
(the SHT31's reset is ``06``); with none, it NACKs like an empty address.
"""

from __future__ import annotations

import errno
import threading
from typing import Protocol

GENERAL_CALL = 0x00


class I2CDevice(Protocol):
    def write(self, data: bytes) -> None: ...
    def read(self, n: int) -> bytes: ...


class SimI2C:
    """The bus: a map from 7-bit address to device model, with plug/unplug for faults."""

    def __init__(self) -> None:
        self._devices: dict[int, I2CDevice] = {}
        self._unplugged: set[int] = set()
        self._lock = threading.Lock()
        self.transactions = 0

    def attach(self, addr: int, device: I2CDevice) -> None:
        self._devices[addr] = device

    def unplug(self, addr: int) -> None:
        """Make ``addr`` NACK everything, as a pulled connector does."""
        self._unplugged.add(addr)

    def plug(self, addr: int) -> None:
        self._unplugged.discard(addr)

    def _dev(self, addr: int) -> I2CDevice:
        self.transactions += 1
        dev = self._devices.get(addr)
        if dev is None or addr in self._unplugged:
            raise OSError(errno.ENODEV, f"no ACK from I2C address 0x{addr:02x}")
        return dev

    def scan(self) -> list[int]:
        return sorted(a for a in self._devices if a not in self._unplugged)

    def writeto(self, addr: int, buf: bytes, stop: bool = True) -> int:
        with self._lock:
            if addr == GENERAL_CALL and addr not in self._devices:
                self._general_call(bytes(buf))
            else:
                self._dev(addr).write(bytes(buf))
        return len(buf)

    def _general_call(self, data: bytes) -> None:
        self.transactions += 1
        taken = False
        for a, dev in self._devices.items():
            call = getattr(dev, "general_call", None)
            if call is not None and a not in self._unplugged:
                taken = bool(call(data)) or taken
        if not taken:
            raise OSError(errno.ENODEV, "no ACK to the I2C general call")

    def readfrom(self, addr: int, nbytes: int, stop: bool = True) -> bytes:
        with self._lock:
            data = self._dev(addr).read(nbytes)
        if len(data) != nbytes:
            raise OSError(errno.EIO, "short read")
        return data

    def readfrom_into(self, addr: int, buf: bytearray, stop: bool = True) -> None:
        buf[:] = self.readfrom(addr, len(buf))

    def readfrom_mem(self, addr: int, memaddr: int, nbytes: int, addrsize: int = 8) -> bytes:
        with self._lock:
            dev = self._dev(addr)
            dev.write(memaddr.to_bytes(addrsize // 8, "big"))
            data = dev.read(nbytes)
        return data

    def readfrom_mem_into(self, addr: int, memaddr: int, buf: bytearray, addrsize: int = 8) -> None:
        buf[:] = self.readfrom_mem(addr, memaddr, len(buf), addrsize)

    def writeto_mem(self, addr: int, memaddr: int, buf: bytes, addrsize: int = 8) -> None:
        with self._lock:
            self._dev(addr).write(memaddr.to_bytes(addrsize // 8, "big") + bytes(buf))

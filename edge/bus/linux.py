"""Linux adapters: ``/dev/i2c-N`` through smbus2 and serial ports through pyserial,
both exposing the MicroPython-shaped contracts in ``edge.bus.i2c`` / ``edge.bus.uart``.

CPython only (the daemon on the pole controller); drivers never import this.
"""

from __future__ import annotations

import errno
import os
import time

import serial
from smbus2 import SMBus, i2c_msg


class LinuxI2C:
    """``machine.I2C`` on a Linux I2C adapter, using combined ``I2C_RDWR`` transfers.

    Plain ``i2c_msg`` reads and writes (not SMBus register calls) so that devices
    such as the SHT31, which need a bare write followed by a bare read, work too.
    """

    def __init__(self, bus: int | str) -> None:
        self._bus = SMBus(bus)

    def close(self) -> None:
        self._bus.close()

    def scan(self) -> list[int]:
        found = []
        for addr in range(0x08, 0x78):
            try:
                self._bus.i2c_rdwr(i2c_msg.read(addr, 1))
            except OSError:
                continue
            found.append(addr)
        return found

    def writeto(self, addr: int, buf: bytes, stop: bool = True) -> int:
        self._bus.i2c_rdwr(i2c_msg.write(addr, bytes(buf)))
        return len(buf)

    def readfrom(self, addr: int, nbytes: int, stop: bool = True) -> bytes:
        msg = i2c_msg.read(addr, nbytes)
        self._bus.i2c_rdwr(msg)
        return bytes(msg)

    def readfrom_into(self, addr: int, buf: bytearray, stop: bool = True) -> None:
        buf[:] = self.readfrom(addr, len(buf))

    def readfrom_mem(self, addr: int, memaddr: int, nbytes: int, addrsize: int = 8) -> bytes:
        write = i2c_msg.write(addr, memaddr.to_bytes(addrsize // 8, "big"))
        read = i2c_msg.read(addr, nbytes)
        self._bus.i2c_rdwr(write, read)
        return bytes(read)

    def readfrom_mem_into(self, addr: int, memaddr: int, buf: bytearray, addrsize: int = 8) -> None:
        buf[:] = self.readfrom_mem(addr, memaddr, len(buf), addrsize)

    def writeto_mem(self, addr: int, memaddr: int, buf: bytes, addrsize: int = 8) -> None:
        payload = memaddr.to_bytes(addrsize // 8, "big") + bytes(buf)
        self._bus.i2c_rdwr(i2c_msg.write(addr, payload))


class SerialUART:
    """``machine.UART`` on a pyserial port, opened non-blocking (``timeout=0``).

    A port that vanishes (USB adapter unplugged) raises ``OSError`` from ``read``;
    the daemon's sensor supervisor reopens it with backoff.
    """

    def __init__(self, port: str, baudrate: int) -> None:
        self.port = port
        self._ser = serial.Serial(port, baudrate=baudrate, timeout=0, write_timeout=1)

    def close(self) -> None:
        self._ser.close()

    def any(self) -> int:
        try:
            return self._ser.in_waiting
        except serial.SerialException as exc:
            raise OSError(errno.EIO, str(exc)) from exc

    def read(self, nbytes: int = -1) -> bytes:
        """What has arrived, without waiting. Reads the fd directly: pyserial's own
        non-blocking read goes through select(), which fails for fds >= 1024."""
        try:
            waiting = self._ser.in_waiting
        except (serial.SerialException, OSError) as exc:
            raise OSError(errno.EIO, str(exc)) from exc
        if not waiting:
            return b""
        n = waiting if nbytes < 0 else min(nbytes, waiting)
        try:
            return os.read(self._ser.fd, n)
        except BlockingIOError:
            return b""

    def write(self, buf: bytes) -> int:
        """Write all of ``buf`` (commands are a few bytes) directly to the fd; pyserial's
        write waits in select(), which fails for fds >= 1024."""
        data = memoryview(bytes(buf))
        deadline = time.monotonic() + 1.0
        written = 0
        while written < len(data):
            try:
                written += os.write(self._ser.fd, data[written:])
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OSError(errno.ETIMEDOUT, "serial write timed out") from None
                time.sleep(0.001)
            except OSError as exc:
                raise OSError(errno.EIO, str(exc)) from exc
        return written

"""The I2C contract every driver codes against (MicroPython's ``machine.I2C`` method names),
and ``I2CDevice``, the one place where a bus error becomes a driver's fault.

A missing or unplugged chip NACKs, which the bus raises as ``OSError``: ENODEV (19) on
MicroPython, ENXIO (6) or EREMOTEIO (121) from a Linux adapter, EIO (5) on a short
read, ETIMEDOUT (110) on a wedged bus. Drivers do not catch any of these: they talk to
their chip through an ``I2CDevice``, which owns the bus and the address and raises
``edge.errors.NoDevice`` carrying the error number. The number, not the bus's text,
goes into the message, so a health log never repeats what a bus driver happened to say.

``const`` is MicroPython's: register numbers declared with it cost a board no RAM. On
CPython it is the identity, decided once here at import time; drivers import it from
this module together with ``I2CDevice``.

Portable module: runs unchanged on MicroPython.
"""

import struct

from edge.errors import NoDevice

try:
    from micropython import const
except ImportError:  # CPython: const() is only a hint to MicroPython's compiler
    const = lambda x: x  # noqa: E731


class I2C:
    """Documentation base class; implementations need not inherit from it."""

    def scan(self) -> list:
        """Addresses (7-bit ints) that ACK."""
        raise OSError(19, "I2C bus has no implementation")

    def writeto(self, addr: int, buf, stop: bool = True) -> int:
        """Plain write (no register byte); returns the number of ACKed bytes."""
        raise OSError(19, "I2C bus has no implementation")

    def readfrom(self, addr: int, nbytes: int, stop: bool = True) -> bytes:
        """Plain read of ``nbytes``."""
        raise OSError(19, "I2C bus has no implementation")

    def readfrom_into(self, addr: int, buf, stop: bool = True) -> None:
        """Plain read filling ``buf``."""
        raise OSError(19, "I2C bus has no implementation")

    def readfrom_mem(self, addr: int, memaddr: int, nbytes: int, addrsize: int = 8) -> bytes:
        """Write the register address, repeated start, read ``nbytes``."""
        raise OSError(19, "I2C bus has no implementation")

    def readfrom_mem_into(self, addr: int, memaddr: int, buf, addrsize: int = 8) -> None:
        """As ``readfrom_mem`` into a preallocated buffer."""
        raise OSError(19, "I2C bus has no implementation")

    def writeto_mem(self, addr: int, memaddr: int, buf, addrsize: int = 8) -> None:
        """Write the register address followed by ``buf`` in one transaction."""
        raise OSError(19, "I2C bus has no implementation")


def _no_device(name: str, address: int, exc: OSError) -> NoDevice:
    """The fault for a bus error at ``address``: its error number, never its text."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    if code is None:
        return NoDevice("%s at 0x%02x does not answer" % (name, address))
    msg = "%s at 0x%02x does not answer (bus error %d)" % (name, address, code)
    return NoDevice(msg, errno=code)


class I2CDevice:
    """One chip on an I2C bus: the bus calls drivers make, bus errors raised as NoDevice.

    Args:
        i2c: the bus (``machine.I2C``, ``edge.bus.linux.LinuxI2C`` or a simulator).
        address: the chip's 7-bit address.
        name: the chip as a technician reads it in a message, e.g. ``"BME280"``.

    No I/O here. Each method is one bus transaction with the bus's own arguments
    minus the address; ``u8``/``u16``/``s16`` read one register.
    """

    def __init__(self, i2c, address: int, name: str) -> None:
        self.i2c = i2c
        self.address = address
        self.name = name
        self._word = bytearray(2)

    def readfrom_mem(self, reg: int, nbytes: int) -> bytes:
        try:
            return self.i2c.readfrom_mem(self.address, reg, nbytes)
        except OSError as exc:
            raise _no_device(self.name, self.address, exc) from exc

    def readfrom_mem_into(self, reg: int, buf) -> None:
        try:
            self.i2c.readfrom_mem_into(self.address, reg, buf)
        except OSError as exc:
            raise _no_device(self.name, self.address, exc) from exc

    def writeto_mem(self, reg: int, buf) -> None:
        try:
            self.i2c.writeto_mem(self.address, reg, buf)
        except OSError as exc:
            raise _no_device(self.name, self.address, exc) from exc

    def writeto(self, buf) -> int:
        """A plain write, such as a 16-bit command (no register byte)."""
        try:
            return self.i2c.writeto(self.address, buf)
        except OSError as exc:
            raise _no_device(self.name, self.address, exc) from exc

    def readfrom(self, nbytes: int) -> bytes:
        try:
            return self.i2c.readfrom(self.address, nbytes)
        except OSError as exc:
            raise _no_device(self.name, self.address, exc) from exc

    def readfrom_into(self, buf) -> None:
        try:
            self.i2c.readfrom_into(self.address, buf)
        except OSError as exc:
            raise _no_device(self.name, self.address, exc) from exc

    def u8(self, reg: int) -> int:
        """One 8-bit register."""
        return self.readfrom_mem(reg, 1)[0]

    def u16(self, reg: int) -> int:
        """One 16-bit big-endian register (as TI's INA chips send them), unsigned."""
        self.readfrom_mem_into(reg, self._word)
        return struct.unpack_from(">H", self._word, 0)[0]

    def s16(self, reg: int) -> int:
        """One 16-bit big-endian register, two's complement."""
        self.readfrom_mem_into(reg, self._word)
        return struct.unpack_from(">h", self._word, 0)[0]

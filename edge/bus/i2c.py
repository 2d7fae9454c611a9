"""The I2C contract every driver codes against: MicroPython's ``machine.I2C`` method names.

A missing device NACKs, which surfaces as ``OSError`` (ENODEV on MicroPython,
ENXIO or EREMOTEIO on Linux). Drivers translate that into ``edge.errors.NoDevice``.

Portable module: runs unchanged on MicroPython.
"""


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

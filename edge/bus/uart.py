"""The UART contract every driver codes against: MicroPython's ``machine.UART`` subset.

Reads never block: ``read()`` returns what has arrived (or ``None``/``b""`` when
nothing has), so a driver can be polled from an event loop without threads.

Portable module: runs unchanged on MicroPython.
"""


class UART:
    """Documentation base class; implementations need not inherit from it."""

    def any(self) -> int:
        """Number of bytes waiting to be read."""
        return 0

    def read(self, nbytes: int = -1):
        """Up to ``nbytes`` waiting bytes (all when -1); ``None`` or ``b""`` if none."""
        return None

    def write(self, buf) -> int:
        """Send ``buf``; returns the number of bytes written."""
        return 0

"""Sensor faults as exception types the daemon turns into quality flags and health counters.

Portable to MicroPython: plain classes only.
"""


class SensorError(Exception):
    """A sensor did not give a usable reading this time; the pole carries on."""

    counter = "sensor_errors"


class ChecksumError(SensorError):
    """A frame arrived but its checksum or CRC did not match: line noise or a misaligned read."""

    counter = "checksum_errors"


class FrameError(SensorError):
    """A frame was truncated, misaligned or had a field that cannot occur."""

    counter = "frame_errors"


class NotReady(SensorError):
    """The device is alive but has no new measurement yet (measuring, warming up)."""

    counter = "not_ready"


class NoDevice(SensorError):
    """Nothing answers at the configured address or port: unplugged, wrong address, or dead.

    ``errno`` is the bus's error number when a bus error was the cause (ENODEV, ENXIO,
    EREMOTEIO, EIO, ...), None when the chip answered but is not the one expected.
    """

    counter = "no_device"

    def __init__(self, message="", errno=None):
        super().__init__(message)
        self.errno = errno


class Implausible(SensorError):
    """A decoded value lies outside what the sensor can physically report."""

    counter = "implausible"

"""Sensor drivers: one short file per model, its bus injected in the constructor.

The contract (duck-typed, portable to MicroPython)::

    class Driver:
        MODEL = "bme280"                       # matches hardware/sensors/<MODEL>.json
        def __init__(self, bus, address=None, **options): ...   # no I/O here
        def start(self) -> None: ...           # probe and configure; raises NoDevice
        def read(self) -> dict | None: ...     # {field: value} for what is new since the
                                               # last call, None if nothing is; raises
                                               # edge.errors.SensorError subclasses

Field names are the keys of ``fields`` in the sensor's descriptor; the daemon maps
them to SenML names and units from there, so a driver never formats output.
I2C drivers talk to their chip through ``edge.bus.i2c.I2CDevice``, which owns the
address and raises a bus error as NoDevice, so no driver catches ``OSError`` itself.
UART drivers must never block: they parse whatever ``bus.read()`` returns and keep
partial frames for the next call. Which class serves a model is named by the
descriptor's ``driver`` entry ("module:Class"), or by a ``lightpole.drivers``
entry point for drivers that live outside this repository.
"""

"""Bus interfaces shaped like MicroPython's ``machine.I2C`` and ``machine.UART``.

Drivers receive one of these in their constructor and never know whether it is a
Linux adapter (``edge.bus.linux``), a microcontroller's ``machine`` object, or a
``host_sim`` model. See ``edge.bus.i2c`` and ``edge.bus.uart`` for the contracts.
"""

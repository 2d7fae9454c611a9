"""ACME sensors for lightpole-gateway: the LUX-1 ambient light sensor.

Three files make a sensor: ``acme_lux.json`` (the descriptor: what it measures, in
which unit, within which range, and the privacy class of every field), ``acme_lux.py``
(the driver, which runs on the pole and on MicroPython) and ``acme_lux_sim.py`` (a
byte-exact simulator, for conformance and simulated poles). The package registers the
driver (``lightpole.drivers``) and the descriptor (``lightpole.descriptors``) through
entry points in its pyproject.toml, so a pole finds both once it is installed.

Keep this file free of imports: the pole imports the package to read the descriptor.
"""

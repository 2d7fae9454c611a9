"""Sensor descriptors (sensors/*.json) and board profiles (boards/*.json), as data.

A package only so that the JSON files install with the software (``pip install .``
or a wheel): edge.descriptors finds them here. No code lives in it."""

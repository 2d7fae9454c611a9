"""The daemon on the pole controller: sensors in, signed anonymous aggregates out."""

__version__ = "0.1.0"

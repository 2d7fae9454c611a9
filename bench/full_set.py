"""The message a real pole sends: the full sensor set's data window, from the same
descriptors the daemon uses (board sim-pole-full), with a minute of plausible samples
per field. Benchmarks measure this, not a two-sensor toy."""

from __future__ import annotations

import random

from edge import senml
from edge.descriptors import load_board, load_sensor
from edge.sensors import AGGREGATED
from edge.window import Window

BOARD = "sim-pole-full"


def full_set_series() -> list[senml.Series]:
    series = []
    for s in load_board(BOARD)["sensors"]:
        desc = load_sensor(s["model"])
        for name, f in desc.fields.items():
            if f.privacy in AGGREGATED:
                series.append(senml.Series(desc.model, name, f.senml, f.unit, f.resolution))
    return series


def full_set_encoder(pole_id: str) -> senml.WindowPackEncoder:
    return senml.WindowPackEncoder(pole_id, full_set_series())


def full_set_window(end: int = 1_800_000_000, samples: int = 60, seed: int = 7) -> Window:
    """A 60 s window with ``samples`` values per public field, inside each field's range
    and at its resolution (as a sensor delivers them)."""
    rng = random.Random(seed)
    w = Window(end - 60, 60)
    for s in load_board(BOARD)["sensors"]:
        desc = load_sensor(s["model"])
        for name, f in desc.fields.items():
            if f.privacy not in AGGREGATED:
                continue
            lo = f.min if f.min is not None else 0.0
            hi = f.max if f.max is not None else lo + 100.0
            centre = lo + (hi - lo) * rng.uniform(0.2, 0.4)
            for _ in range(samples):
                v = centre + (hi - lo) * rng.uniform(-0.01, 0.01)
                w.add((desc.model, name), round(round(v / f.resolution) * f.resolution, 6))
    return w

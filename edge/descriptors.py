"""Load sensor descriptors and board profiles from ``hardware/``: the one source of truth
for what each sensor measures, in which unit, within which range, and whether a
field may ever leave the pole.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

PRIVACY_CLASSES = ("public", "count", "personal", "health")


def default_hardware_dir() -> Path:
    """``$LIGHTPOLE_HARDWARE``, else the installed ``hardware`` package's folder (the
    repository's ``hardware/`` in a checkout, the same files in site-packages from a
    wheel: they are package data, so ``pip install .`` brings every board)."""
    env = os.environ.get("LIGHTPOLE_HARDWARE")
    if env:
        return Path(env)
    import hardware

    return Path(hardware.__file__).resolve().parent


class DescriptorError(ValueError):
    """A descriptor or board profile is malformed; the message names the file and key."""


class Field:
    def __init__(self, sensor: str, name: str, spec: dict, source: str) -> None:
        try:
            self.senml = spec["senml"]
            self.unit = spec.get("unit", "")
            self.min = float(spec["min"]) if "min" in spec else None
            self.max = float(spec["max"]) if "max" in spec else None
            self.resolution = float(spec.get("resolution", 0.01))
            # Published value = driver value x scale: a driver reports in its datasheet's
            # unit (the PMS5003 counts particles per 0.1 L), the pole publishes in the
            # descriptor's (particles per m3). min, max, resolution: published unit.
            self.scale = float(spec.get("scale", 1))
            self.privacy = spec["privacy"]
            # Identical samples in a row after which the value counts as stuck (0: never;
            # only for fields whose noise makes exact repeats implausible).
            self.stuck_after = int(spec.get("stuck_after", 0))
        except KeyError as exc:
            raise DescriptorError(f"{source}: field {name!r} lacks {exc.args[0]!r}") from None
        if self.privacy not in PRIVACY_CLASSES:
            raise DescriptorError(
                f"{source}: field {name!r} has privacy {self.privacy!r}; "
                f"use one of {', '.join(PRIVACY_CLASSES)}"
            )
        self.name = name
        self.sensor = sensor

    def plausible(self, value: float) -> bool:
        if self.min is not None and value < self.min:
            return False
        return not (self.max is not None and value > self.max)


class SensorDescriptor:
    def __init__(self, data: dict, source: str) -> None:
        try:
            self.model = data["model"]
            self.bus = data["bus"]
            self.driver = data.get("driver", "")
            self.simulator = data.get("simulator", "")
            self.poll_s = float(data.get("poll_s", 1.0))
            self.fields = {k: Field(self.model, k, v, source) for k, v in data["fields"].items()}
        except KeyError as exc:
            raise DescriptorError(f"{source}: missing key {exc.args[0]!r}") from None
        self.title = data.get("title", self.model)
        self.purpose = data.get("purpose", "")
        self.baud = data.get("baud")
        self.addresses = data.get("addresses", [])
        self.default_address = data.get("default_address")
        self.conformance = data.get("conformance", {})
        # A serial sensor streams frames; silence this long means a loose cable or a dead
        # sensor (an I2C one NACKs instead). 0 disables it, for sensors that are quiet
        # by nature (a probe sniffer on an empty street).
        default_silent = max(10 * self.poll_s, 10.0) if self.bus == "uart" else 0.0
        self.silent_after_s = float(data.get("silent_after_s", default_silent))
        self.raw = data
        self.source = source


def load_sensor(model: str, hardware_dir: Path | None = None) -> SensorDescriptor:
    hw = hardware_dir or default_hardware_dir()
    path = hw / "sensors" / f"{model}.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        known = ", ".join(sorted(p.stem for p in (hw / "sensors").glob("*.json")))
        raise DescriptorError(
            f"no descriptor for sensor model {model!r} in {hw}/sensors (known: {known})"
        ) from None
    except json.JSONDecodeError as exc:
        raise DescriptorError(f"{path}: not valid JSON ({exc})") from None
    return SensorDescriptor(data, str(path))


def load_all_sensors(hardware_dir: Path | None = None) -> dict[str, SensorDescriptor]:
    hw = hardware_dir or default_hardware_dir()
    return {p.stem: load_sensor(p.stem, hw) for p in sorted((hw / "sensors").glob("*.json"))}


def load_board(name: str, hardware_dir: Path | None = None) -> dict:
    hw = hardware_dir or default_hardware_dir()
    path = hw / "boards" / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        known = ", ".join(sorted(p.stem for p in (hw / "boards").glob("*.json")))
        raise DescriptorError(
            f"no board profile {name!r} in {hw}/boards (known: {known})"
        ) from None

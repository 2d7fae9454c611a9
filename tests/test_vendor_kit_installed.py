"""The vendor kit as a vendor ships it: built and installed with pip into a folder of its
own, found by a pole through its two entry points only (not through this checkout),
passing conformance, riding on a simulated pole with ``--sensor``, in the audit and in
the verifier's output.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w

from edge.descriptors import load_all_sensors, load_sensor
from edge.sensors import driver_class, driver_shadow

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / "docs" / "vendor-kit"


def _can_build_offline() -> bool:
    """Whether this interpreter's setuptools builds wheels by itself (>= 70.1, or with
    the wheel package), so pip needs no isolated build environment from an index."""
    if importlib.util.find_spec("wheel") is not None:
        return True
    try:
        return importlib.util.find_spec("setuptools.command.bdist_wheel") is not None
    except ImportError:
        return False


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The kit, pip-installed into a folder of its own (a copy is built, so the
    checkout gains no build/ or egg-info)."""
    work = tmp_path_factory.mktemp("vendor-kit")
    src = work / "src"
    shutil.copytree(KIT, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(src)]
    if _can_build_offline():
        cmd.insert(-1, "--no-build-isolation")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (
        f"pip could not install the kit:\n{r.stdout[-3000:]}{r.stderr[-3000:]}"
    )
    assert (target / "acme_lightpole" / "acme_lux.json").is_file()
    return target


@pytest.fixture
def installed(site, monkeypatch):
    """This process sees the installed kit (and only that copy)."""
    monkeypatch.syspath_prepend(str(site))
    yield site
    for name in [m for m in sys.modules if m.split(".")[0] == "acme_lightpole"]:
        sys.modules.pop(name)


def env_with(site: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{site}:{ROOT}"
    return env


def cli(site: Path, module: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env_with(site),
    )


def test_both_entry_points_find_the_installed_kit(installed, tmp_path):
    desc = load_sensor("acme_lux")
    assert "lightpole.descriptors entry point 'acme_lux' of acme-lightpole 1.0.0" in desc.source
    assert desc.source.startswith(str(installed))
    cls = driver_class(desc)
    assert cls.__name__ == "AcmeLux" and sys.modules[cls.__module__].__file__.startswith(
        str(installed)
    )
    assert driver_shadow(desc) is None  # the entry point names the descriptor's driver
    # Merged with the built-ins, also when a pole points hardware_dir at a folder of its own.
    own = tmp_path / "hw"
    (own / "sensors").mkdir(parents=True)
    for every in (load_all_sensors(), load_all_sensors(own)):
        assert {"acme_lux", "bme280", "sht31", "sds011"} <= set(every)


def test_installed_kit_passes_conformance_with_every_built_in(site):
    r = cli(site, "host_sim.cli", "conformance")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    table = r.stdout.split("acme_lux\n", 1)[1].split("\n\n", 1)[0]
    assert "FAIL" not in table and "reads value       pass   illuminance=320" in table, table
    assert "stuck value       pass" in table and "timeout           pass" in table
    assert re.search(r"1[1-9] driver\(s\), 0 failing check\(s\)", r.stdout), r.stdout[-500:]
    by_file = cli(
        site,
        "host_sim.cli",
        "conformance",
        "--descriptor",
        str(site / "acme_lightpole" / "acme_lux.json"),
    )
    assert by_file.returncode == 0 and "0 failing check(s)" in by_file.stdout, by_file.stderr


def test_installed_kit_rides_on_a_simulated_pole(installed, tmp_path):
    from host_sim.pole import SimPole
    from host_sim.world import World

    sp = SimPole(
        "nl-kit-0001",
        tmp_path / "state",
        "mqtt://127.0.0.1:1",
        World(1).pole(0),
        sensors="basic",
        extra_sensors=["acme_lux", "sht31"],
    )
    try:
        entries = {s["model"]: s for s in sp.config_dict["sensors"]}
        assert entries["acme_lux"] == {"model": "acme_lux", "i2c_bus": "sim", "address": 0x23}
        assert set(entries) == {"sds011", "bme280", "acme_lux", "sht31"}
        runner = next(r for r in sp.pole.runners if r.name == "acme_lux")
        deadline = time.monotonic() + 5
        while not runner.samples and time.monotonic() < deadline:
            runner.poll_once()  # the real driver, over the pole's I2C bus, to the simulator
            time.sleep(0.05)
        (mean,) = [s.mean() for k, s in sp.pole.window.series.items() if k[0] == "acme_lux"]
        assert 250 < mean < 400, mean  # its descriptor's typical 320 lx, drifting
        assert sp.unplug("acme_lux") and not sp.unplug("nosuch")

        # The audit of that pole's configuration lists the vendor's field and its class.
        config = tmp_path / "pole.toml"
        config.write_bytes(tomli_w.dumps(sp.config_dict).encode())
        r = cli(installed, "provisioning.cli", "audit", "--config", str(config))
        assert r.returncode == 0, r.stderr
        line = next(x for x in r.stdout.splitlines() if "acme_lux/illuminance/mean" in x)
        assert line.split()[1:3] == ["lx", "public"], line
    finally:
        sp.pole.lock.release()
        for port in sp.ptys:
            port.close()
    # A provisioned controller's pole (SimController(extra_sensors=...).boot) carries them.
    sp2 = SimPole(
        "nl-kit-0002", tmp_path / "s2", "mqtt://127.0.0.1:1", World(1).pole(1),
        extra_sensors=("acme_lux",),
    )  # fmt: skip
    try:
        assert "acme_lux" in [s.model for s in sp2.config.sensors]
    finally:
        sp2.pole.lock.release()
        for port in sp2.ptys:
            port.close()


def test_pole_toml_with_the_kit_is_audited(site, tmp_path):
    config = tmp_path / "pole.toml"
    config.write_text(
        'pole_id = "nl-kit-0003"\n[[sensors]]\nmodel = "acme_lux"\ni2c_bus = 1\naddress = 0x23\n'
    )
    r = cli(site, "provisioning.cli", "audit", "--config", str(config))
    assert r.returncode == 0, r.stderr
    assert "acme_lux/illuminance/mean" in r.stdout and "acme_lux.illuminance" in r.stdout


@pytest.mark.broker
def test_demo_with_the_kit_shows_its_field_verified(site, tmp_path):
    r = cli(
        site,
        "host_sim.cli",
        "demo",
        "--poles",
        "1",
        "--sensors",
        "basic",
        "--sensor",
        "acme_lux",
        "--duration",
        "8",
        "--window",
        "2",
        "--workdir",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "provisioned nl-demo-0001" in r.stdout and "acme_lux" in r.stdout.splitlines()[1]
    lux = [
        float(m) for m in re.findall(r"verified data .*acme_lux: illuminance ([\d.]+) lx", r.stdout)
    ]
    assert lux and all(250 < v < 400 for v in lux), r.stdout[-2000:]
    assert "REJECTED" not in r.stdout

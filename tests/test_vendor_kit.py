"""The vendor kit's example passes conformance as shipped, so the guide is true."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edge.descriptors import SensorDescriptor
from host_sim.conformance import run

KIT = Path(__file__).resolve().parent.parent / "docs" / "vendor-kit"


def test_template_driver_passes_conformance(monkeypatch):
    monkeypatch.syspath_prepend(str(KIT))
    data = json.loads((KIT / "acme_lux.json").read_text())
    data["driver"] = "acme_lux:AcmeLux"  # as if installed as acme_lightpole
    data["simulator"] = "acme_lux_sim:AcmeLuxSim"
    rows = run(SensorDescriptor(data, str(KIT / "acme_lux.json")))
    assert not [r for r in rows if r[1] == "FAIL"], rows
    assert dict((r[0], r[1]) for r in rows)["reads value"] == "pass"
    for name in ("acme_lux", "acme_lux_sim"):
        sys.modules.pop(name, None)

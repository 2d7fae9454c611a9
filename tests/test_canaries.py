"""No personal data leaves the pole: random probe traffic with planted canaries (global
and randomised MACs, SSIDs) runs through the whole pipeline — driver, supervisor,
gate, unique counting, windows, bins, signing, spool, health, manifest, logs at DEBUG —
and every byte the run wrote is scanned for the canaries in raw, hex, colon, base64 and
hashed forms. Then the same through a real broker, scanning every published payload."""

from __future__ import annotations

import asyncio
import logging

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.config import PoleConfig
from edge.daemon import Pole
from edge.manifest import allowed
from edge.state import create_identity
from host_sim.devices.probe_sniffer import ProbeSnifferSim, line
from host_sim.serial_pty import LoopbackUART
from tests import canaries
from tests.polekit import Harness

# Canaries must be tellable from ordinary bytes (six zero bytes occur in any file):
# at least five distinct byte values. Half randomised (bit 1 of octet 0), half global.
macs = (
    st.binary(min_size=6, max_size=6)
    .filter(lambda b: len(set(b)) >= 5)
    .map(lambda b: bytes([b[0] | 0x02 if b[1] & 1 else b[0] & 0xFC]) + b[1:])
)
ssids = st.binary(min_size=6, max_size=24).filter(lambda b: len(set(b)) >= 5)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(macs, min_size=1, max_size=12, unique=True),
    st.lists(ssids, max_size=4),
    st.integers(0, 3),
    st.booleans(),
)
def test_canaries_never_leave_the_pipeline(tmp_path_factory, plant, ssid_list, corrupt, unique):
    work = tmp_path_factory.mktemp("canary")
    create_identity(work, "nl-can-0001")
    log_file = work / "pole.log"
    handler = logging.FileHandler(log_file)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.DEBUG)
    try:
        uart = LoopbackUART(ProbeSnifferSim(lambda: []))
        cfg = PoleConfig(
            {
                "pole_id": "nl-can-0001",
                "state_dir": str(work),
                "window_s": 60,
                "driver_timeout_s": 0,
                "privacy": {
                    "unique_devices": unique,
                    "bin_s": 60,
                    "legal_basis": "test: canaries through the pipeline",
                },
                "sensors": [{"model": "probe_sniffer", "port": "sim"}],
            }
        )
        pole = Pole(cfg, open_bus=lambda sc, d: uart)
        runner = pole.runners[0]
        names = ssid_list or [b"x"]
        for i, mac in enumerate(plant * 3):
            ln = line(i, mac, -50, 6, names[i % len(names)])
            if corrupt and i % 4 == corrupt:
                ln = ln[:-4] + b"ZZ\r\n"  # bad checksum: must be logged without content
            uart.inject(ln)
            runner.poll_once()
        pole.close_window()
        pole.close_bin()
        pole.outbox.post("health", pole._health_payload())
        pole.outbox.post("manifest", pole._manifest_payload())
        if unique:
            published = [p for _, k, p, _ in pole.spool.pending(100) if k == "counts"]
            assert published, "a counts pack must leave even for a handful of devices"
        pole.spool.close()
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(old)
    leaks = canaries.scan(canaries.files(work), plant, ssid_list)
    assert not leaks, leaks[:5]


def test_canaries_never_reach_the_broker(mosquitto, tmp_path):
    plant = [
        bytes.fromhex("3c22fb0a1b2c"),
        bytes.fromhex("da00beef1234"),
        bytes.fromhex("02aabbccddee"),
    ]
    ssid = [b"CanaryHomeNet", b"Secret-Office-5G"]

    async def go() -> Harness:
        h = Harness(
            tmp_path,
            mosquitto.url,
            n=1,
            window_s=1,
            sensors="full",
            world=__import__("host_sim.world", fromlist=["World"]).World(5).pole(0),
            probe_legal_basis="test: planted canaries only",
        )
        sp = h.poles[0]
        sp.phones = [(m, ssid[i % 2]) for i, m in enumerate(plant * 4)]
        await h.start()
        await asyncio.sleep(4)
        await h.stop()
        return h

    h = asyncio.run(go())
    assert h.raw
    blobs = {f"{t}#{i}": p for i, (t, p) in enumerate(h.raw)}
    blobs.update(canaries.files(tmp_path))
    leaks = canaries.scan(blobs, plant, ssid)
    assert not leaks, leaks[:5]
    # Egress audit against captured traffic: every record of every kind is in the schema.
    pole = h.poles[0].pole
    seen = {
        (v.kind, r.name.split("/", 1)[1]) for _, v in h.verdicts if v.accepted for r in v.records
    }
    assert {k for k, _ in seen} >= {"data", "health", "birth", "manifest"}  # bins: 15 min
    outside = {(k, n) for k, n in seen if not allowed(pole.schema, k, n)}
    assert not outside, outside


def test_the_scanner_finds_what_it_looks_for():
    mac = bytes.fromhex("3c22fb0a1b2c")
    for form in canaries.forms(mac):
        assert canaries.scan({"x": b"..." + form + b"..."}, [mac], [])
    assert canaries.scan({"x": b"CanaryHomeNet".hex().encode()}, [], [b"CanaryHomeNet"])

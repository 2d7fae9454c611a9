"""Power cuts and outages lose nothing (issue 5): a real Mosquitto stopped for 60 s, the
daemon SIGKILLed 50 times while publishing, a full and a read-only disk."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import cbor2
import pytest

from edge.spool import Spool
from host_sim.broker import Mosquitto
from tests.polekit import Harness, Receiver, register, spooled_ctis

pytestmark = [pytest.mark.broker, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent


def test_sixty_second_outage_every_reading_verified_exactly_once(tmp_path):
    broker = Mosquitto(workdir=tmp_path / "mosq", persistent=True).start()

    async def go() -> Harness:
        h = Harness(tmp_path, broker.url, n=1, window_s=2)
        await h.start()
        await asyncio.sleep(4)
        broker.stop()
        await asyncio.sleep(60)  # sensors keep producing; the spool holds everything
        broker.start()
        # Both the pole and the verifier reconnect with backoff (up to 30 s each), then
        # the backlog drains: wait until the verifier has every window sealed so far.
        pole = h.poles[0].pole
        for _ in range(150):
            await asyncio.sleep(1)
            if (
                pole.spool.depth() == 0
                and pole.publisher.connected.is_set()
                and len(h.accepted(kind="data")) >= pole.windows_sent - 1
            ):
                break
        await asyncio.sleep(2)
        await h.stop(settle=3)
        return h

    try:
        h = asyncio.run(go())
    finally:
        broker.close()
    sp = h.poles[0]
    left = spooled_ctis(sp.config.state_dir / "spool.sqlite")
    data = h.accepted(kind="data")
    ctis = [v.cti for v in data]
    assert len(ctis) == len(set(ctis)), "a reading was accepted twice"
    assert sp.pole.windows_sent >= 33
    # Every window sealed was verified once, except any still in flight at the very end.
    assert len(data) + len([c for c in left if c not in set(ctis)]) >= sp.pole.windows_sent
    assert len(data) >= sp.pole.windows_sent - 1
    assert h.store.count("data") == len(data)
    replayed = [v for v in data if v.records and v.records[0].time < 0]
    assert not replayed  # absolute times: the clock was valid throughout
    assert not h.rejected()


def test_sigkill_fifty_times_loses_nothing_and_never_reuses_a_cti(tmp_path):
    rng = random.Random(2026)
    broker = Mosquitto(workdir=tmp_path / "mosq", persistent=True).start()
    register(tmp_path, "nl-crash-0001")
    state = tmp_path / "nl-crash-0001"
    spool_path = state / "spool.sqlite"
    cmd = [
        sys.executable,
        "-m",
        "host_sim.cli",
        "pole",
        "--pole-id",
        "nl-crash-0001",
        "--state-dir",
        str(state),
        "--broker",
        broker.url,
        "--window",
        "1",
        "--health",
        "1",
    ]

    async def go() -> tuple[Receiver, dict[int, bytes], int]:
        rx = Receiver(tmp_path, broker.url)
        await rx.start()
        spooled: dict[int, bytes] = {}
        kills = 0
        boot_file = state / "boot_counter"
        for n in range(50):
            proc = await asyncio.create_subprocess_exec(*cmd, cwd=ROOT)
            # Kill at a random point of the run, counted from when this boot took its
            # epoch (persisted before any message is signed): on a loaded machine the
            # interpreter alone can take longer to start than the shortest run.
            for _ in range(300):
                if boot_file.exists() and boot_file.read_text().strip() == str(n + 1):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(rng.uniform(0.1, 2.0))
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            kills += 1
            if spool_path.exists():
                spooled.update(spooled_ctis(spool_path))
            if rng.random() < 0.2:  # and the broker restarts too, at random
                broker.stop()
                await asyncio.sleep(rng.uniform(0.1, 1.0))
                broker.start()
        # A last, clean run drains whatever is left.
        proc = await asyncio.create_subprocess_exec(*cmd, cwd=ROOT)
        for _ in range(120):
            await asyncio.sleep(0.5)
            if not spooled_ctis(spool_path) and len(rx.ctis()) > 0:
                break
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
        await asyncio.sleep(2)
        await rx.stop()
        return rx, spooled, kills

    try:
        rx, spooled, kills = asyncio.run(go())
    finally:
        broker.close()
    assert kills == 50
    received = rx.ctis()
    missing = set(spooled) - received
    assert not missing, f"{len(missing)} spooled messages never arrived"
    # No cti was ever used for two different messages.
    seen: dict[int, bytes] = {}
    for _topic, payload in rx.raw:
        try:
            prot = cbor2.loads(cbor2.loads(payload).value[0])
        except Exception:
            continue
        cti = int.from_bytes(prot[15][7], "big")
        assert seen.setdefault(cti, payload) == payload, f"cti {cti:#x} reused"
    assert len(rx.ctis("data")) >= 40
    assert not [v for _, v in rx.verdicts if v.status == "rejected"]
    sp = Spool(spool_path)
    assert sp.recovered_corrupt == 0 and sp.depth() == 0
    sp.close()
    boot = int((state / "boot_counter").read_text())
    assert boot == kills + 1


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="mounting a small filesystem needs root (CI runs as root)"
)


@needs_root
@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_full_or_read_only_disk_raises_alarm_and_live_data_flows(mosquitto, tmp_path, fault):
    """A real small filesystem (tmpfs) under the pole's state: filled up while the pole
    runs, or mounted read-only before it starts (as after a failing SD card remounts
    itself read-only). Either way: an alarm in the health stream, and live data flows."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    _sh("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt))
    try:
        if fault == "read-only":
            from host_sim.pole import ensure_identity

            ensure_identity(mnt / "nl-test-0001", "nl-test-0001")
            _sh("mount", "-o", "remount,ro", str(mnt))
        mark: list[int] = []

        async def go() -> Harness:
            h = Harness(tmp_path, mosquitto.url, n=1, window_s=1, state_root=mnt)
            await h.start()
            await asyncio.sleep(2)
            if fault == "full":
                with open(mnt / "filler", "wb") as f:
                    try:
                        while True:
                            f.write(b"\0" * 65536)
                            f.flush()
                    except OSError:
                        pass
            mark.append(len(h.verdicts))
            await asyncio.sleep(6)
            await h.stop(settle=1)
            return h

        h = asyncio.run(go())
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
    after = [v for _, v in h.verdicts[mark[0] :] if v.status == "accepted"]
    data_after = [v for v in after if v.kind == "data"]
    assert len(data_after) >= 3, "live data stopped flowing"
    alarms = {
        r.name.rsplit("/", 1)[1]
        for v in after
        if v.kind == "health"
        for r in v.records
        if "/alarm/" in r.name and not r.name.endswith("/detail")
    }
    assert "spool_unwritable" in alarms, alarms
    assert not h.rejected()

"""End to end through a real Mosquitto: simulated sensors on real ptys and a simulated
I2C bus, the real edge daemon, the verifier with the exported trust list."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from host_sim.broker import Mosquitto
from tests.polekit import Fixed, Harness

pytestmark = pytest.mark.broker


def _means(v) -> dict[str, float]:
    return {r.name.split("/", 1)[1]: r.value for r in v.records if r.name.endswith("/mean")}


def test_poles_publish_verified_decodable_data(mosquitto, tmp_path):
    async def go() -> Harness:
        h = Harness(tmp_path, mosquitto.url, n=2, window_s=1)
        await h.start()
        await asyncio.sleep(5)
        await h.stop()
        return h

    h = asyncio.run(go())
    assert not h.rejected(), h.rejected()
    for sp in h.poles:
        assert h.accepted(sp.pole_id, "birth"), "no birth message"
        data = [v for v in h.accepted(sp.pole_id, "data") if _means(v)]
        assert len(data) >= 2, f"{sp.pole_id}: {len(data)} data messages with readings"
        means = {}
        for v in data:
            means.update(_means(v))
        assert abs(means["bme280/temperature/mean"] - Fixed.CLIMATE["temperature"]) <= 0.01
        assert abs(means["bme280/humidity/mean"] - Fixed.CLIMATE["humidity"]) <= 0.01
        assert abs(means["bme280/pressure/mean"] - Fixed.CLIMATE["pressure"]) <= 1.0
        assert abs(means["sds011/pm2_5/mean"] - Fixed.AIR["pm2_5"]) <= 0.05
        assert abs(means["sds011/pm10/mean"] - Fixed.AIR["pm10"]) <= 0.05
        assert h.accepted(sp.pole_id, "death"), "no death message on clean stop"
    assert h.store.db is not None


def test_broker_outage_loses_nothing_and_stores_once(tmp_path):
    """Short version of the outage test: the broker is down for 4 s while sensors produce."""
    # Persistent, so the verifier's session (and its queued messages) survive the restart.
    broker = Mosquitto(workdir=tmp_path / "mosq", persistent=True).start()

    async def go() -> Harness:
        h = Harness(tmp_path, broker.url, n=1, window_s=1)
        await h.start()
        await asyncio.sleep(3)
        broker.stop()
        await asyncio.sleep(4)
        broker.start()
        await asyncio.sleep(8)  # reconnect backoff + drain
        await h.stop(settle=2)
        return h

    try:
        h = asyncio.run(go())
    finally:
        broker.close()
    pole = h.poles[0].pole
    sealed = pole.windows_sent
    data = h.accepted(kind="data")
    ctis = [v.cti for v in data]
    assert len(ctis) == len(set(ctis)), "a data message was accepted twice"
    # Whatever was still in flight at the stop stays in the spool for the next start.
    db = sqlite3.connect(h.poles[0].config.state_dir / "spool.sqlite")
    left = db.execute("SELECT COUNT(*) FROM spool WHERE kind='data'").fetchone()[0]
    db.close()
    assert len(data) + left == sealed, (len(data), left, sealed)
    assert sealed >= 12
    assert h.store.count("data") == len(data)
    assert not h.rejected()

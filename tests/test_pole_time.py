"""Honest time: without a valid clock a pole sends relative time and its uptime, no iat;
a clock jump (NTP sync after a power cut) does not replay the windows in between."""

from __future__ import annotations

import cbor2

from edge.clock import VALID_AFTER, Clock
from edge.config import PoleConfig
from edge.daemon import Pole
from edge.state import create_identity
from provisioning.senml_decode import resolve


class FakeTime:
    def __init__(self, wall: float) -> None:
        self.wall = wall
        self.mono = 100.0

    def clock(self) -> Clock:
        return Clock(wall=lambda: self.wall, monotonic=lambda: self.mono)


def make_pole(tmp_path, t: FakeTime) -> Pole:
    create_identity(tmp_path, "nl-ex-0001")
    cfg = PoleConfig({"pole_id": "nl-ex-0001", "state_dir": str(tmp_path), "window_s": 60})
    return Pole(cfg, clock=t.clock())


def decode(message: bytes) -> tuple[dict, list]:
    prot, _, payload, _ = cbor2.loads(message).value
    return cbor2.loads(prot), resolve(cbor2.loads(payload))


def test_unsynced_clock_gives_relative_time_and_no_iat(tmp_path):
    t = FakeTime(wall=1_000.0)  # 1970: the controller just lost power
    pole = make_pole(tmp_path, t)
    t.wall, t.mono = 1_060.0, 160.0
    prot, recs = decode(pole.close_window())
    assert 6 not in prot[15]  # no iat
    names = {r.name: r for r in recs}
    assert names["nl-ex-0001/window"].time == 0  # SenML relative: "roughly now"
    assert names["nl-ex-0001/uptime"].value == 60.0 and names["nl-ex-0001/uptime"].unit == "s"
    pole.spool.close()


def test_valid_clock_gives_absolute_time_and_iat(tmp_path):
    t = FakeTime(wall=VALID_AFTER + 3_600.0)
    pole = make_pole(tmp_path, t)
    t.wall += 60
    prot, recs = decode(pole.close_window())
    assert prot[15][6] == int(t.wall)
    assert recs[0].time == pole.window.start and recs[0].time >= VALID_AFTER
    assert not any(r.name.endswith("/uptime") for r in recs)
    pole.spool.close()


def test_clock_jump_starts_at_the_current_window(tmp_path):
    t = FakeTime(wall=1_000.0)
    pole = make_pole(tmp_path, t)
    t.wall = VALID_AFTER + 10_000.0  # NTP sync
    pole.close_window()
    assert pole.window.start == (VALID_AFTER + 10_000) // 60 * 60
    assert pole.windows_sent == 1
    pole.spool.close()

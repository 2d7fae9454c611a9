"""Nothing dies quietly: every internal task of a real pole made to raise once is reported
in the verified health stream within a window and restarted, windows keep coming; and
under systemd the watchdog heartbeat stops when windows stop."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest

from edge.sdnotify import Progress
from tests.polekit import Fixed, Harness

pytestmark = pytest.mark.broker

WINDOW = 2


def _fail_once(fn, delay: float, log: dict, name: str):
    """``fn`` (a coroutine function), except that its first run raises after ``delay``."""
    state = {"first": True}

    async def wrapper():
        if state["first"]:
            state["first"] = False
            await asyncio.sleep(delay)
            log[name] = time.time()
            raise RuntimeError("injected fault")
        return await fn()

    return wrapper


def test_every_task_that_raises_is_reported_and_restarted(mosquitto, tmp_path):
    crashed: dict[str, float] = {}

    async def go() -> Harness:
        world = __import__("host_sim.world", fromlist=["World"]).World(5).pole(0)
        h = Harness(tmp_path, mosquitto.url, n=1, window_s=WINDOW, sensors="full", world=world)
        pole = h.poles[0].pole
        targets = {
            "windows": (pole, "_windows"),
            "health": (pole, "_health"),
            "bins": (pole, "_bins"),
            "transport": (pole.transport, "run"),
        }
        for r in pole.runners:
            targets[f"sensor:{r.name}"] = (r, "run")
        for i, (name, (obj, attr)) in enumerate(sorted(targets.items())):
            setattr(obj, attr, _fail_once(getattr(obj, attr), 1.0 + 0.7 * i, crashed, name))
        await h.start()
        await asyncio.sleep(1.0 + 0.7 * len(targets) + 3 * WINDOW)
        await h.stop()
        return h

    h = asyncio.run(go())
    pole = h.poles[0].pole
    assert set(crashed) == {"windows", "health", "bins", "transport"} | {
        f"sensor:{r.name}" for r in pole.runners
    }
    health = sorted(h.accepted(kind="health"), key=lambda v: v.records[0].time)
    for name, when in crashed.items():
        reports = [
            v
            for v in health
            if any(r.name.endswith(f"/counter/{name}.crashes") and r.value >= 1 for r in v.records)
        ]
        assert reports, f"{name}: no verified health message counts its crash"
        first = reports[0]
        assert first.records[0].time - when <= WINDOW, (name, first.records[0].time - when)
        names = {r.name.split("/", 1)[1] for r in first.records}
        assert "alarm/task_crashed" in names, (name, sorted(names))
    # The windows kept coming: data windows sealed after the last crash were verified.
    last = max(crashed.values())
    after = [v for v in h.accepted(kind="data") if v.records[0].time > last]
    assert len(after) >= 2, len(after)
    assert not h.rejected()


def test_watchdog_heartbeats_stop_when_windows_stop(mosquitto, tmp_path, monkeypatch):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(0.1)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", str(1_000_000))  # a heartbeat every 0.5 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    got: list[tuple[float, str]] = []
    stalled_at: list[float] = []

    def drain() -> None:
        while True:
            try:
                data = sock.recv(4096)
            except (TimeoutError, BlockingIOError):
                return
            got.append((time.monotonic(), data.decode()))

    async def go() -> None:
        h = Harness(tmp_path, mosquitto.url, n=1, window_s=1, world=Fixed())
        pole = h.poles[0].pole
        pole.progress = Progress(2.5)  # the daemon's is 2 windows + 30 s; a test waits less
        windows = pole._windows

        async def windows_that_wedge() -> None:
            task = asyncio.create_task(windows())
            await asyncio.sleep(3)
            task.cancel()  # the window loop stops (wedged), the task itself hangs on
            stalled_at.append(time.monotonic())
            await asyncio.Event().wait()

        pole._windows = windows_that_wedge
        await h.start()
        for _ in range(100):  # 10 s
            await asyncio.sleep(0.1)
            drain()
        await h.stop()

    asyncio.run(go())
    sock.close()
    assert any("READY=1" in m for _, m in got)
    beats = [t for t, m in got if "WATCHDOG=1" in m]
    stall = stalled_at[0]
    assert len([t for t in beats if t < stall]) >= 3  # heartbeats while windows are sealed
    late = [t for t in beats if t > stall + 2.5 + 0.6]  # progress limit + one interval
    assert not late, f"{len(late)} heartbeats after the windows stopped"
    assert any("STATUS=stalled" in m for _, m in got)

"""The systemd notify protocol against a real AF_UNIX datagram socket standing in for
systemd's $NOTIFY_SOCKET (a path in tmp_path, and a name in the abstract namespace).
Timing is only ever "arrived / did not arrive within generous bounds"."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.sdnotify import Notifier, Progress, watchdog_interval

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs AF_UNIX")


class FakeSystemd:
    """The receiving end: a bound datagram socket and what has arrived on it."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        bind_to = "\0" + address[1:] if address.startswith("@") else address
        self.sock.bind(bind_to)
        self.sock.setblocking(False)
        self.address = address

    def drain(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    path = tmp_path / "notify"
    if len(str(path)) > 100:  # sun_path holds 108 bytes
        path = Path(tempfile.mkdtemp(prefix="sdn")) / "notify"
    receiver = FakeSystemd(str(path))
    yield receiver
    receiver.close()


@pytest.fixture
def abstract_systemd() -> Iterator[FakeSystemd]:
    receiver = FakeSystemd("@lightpole-test-" + uuid.uuid4().hex)
    yield receiver
    receiver.close()


def test_ready_status_and_stopping_arrive_on_a_path_socket(systemd):
    n = Notifier({"NOTIFY_SOCKET": systemd.address})
    assert n.enabled
    assert n.ready("3 sensors")
    assert n.status("window sealed\nspool 0")  # one field, one line
    assert n.stopping()
    n.close()
    assert systemd.drain() == [
        "READY=1\nSTATUS=3 sensors",
        "STATUS=window sealed spool 0",
        "STOPPING=1",
    ]


def test_the_abstract_namespace_works_too(abstract_systemd):
    n = Notifier({"NOTIFY_SOCKET": abstract_systemd.address})
    assert n.ready()
    assert n.watchdog()
    n.close()
    assert abstract_systemd.drain() == ["READY=1", "WATCHDOG=1"]


def test_watchdog_interval_from_the_environment():
    me = os.getpid()
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "120000000"}) == 120.0
    assert watchdog_interval({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": str(me)}) == 120.0
    assert watchdog_interval({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": str(me + 1)}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "7"}, pid=7) == 2.0
    for bad in ("", "0", "-5", "soon"):
        assert watchdog_interval({"WATCHDOG_USEC": bad}) is None


async def _count(systemd: FakeSystemd, seconds: float) -> list[str]:
    await asyncio.sleep(seconds)
    return systemd.drain()


def test_heartbeats_arrive_only_while_there_is_progress(systemd, caplog):
    async def main() -> None:
        # A 0.2 s watchdog: a heartbeat every 0.1 s, about 10 a second.
        n = Notifier({"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "200000"})
        moving = True
        beat = asyncio.create_task(n.heartbeat(lambda: moving, status=lambda: "windows: 4"))
        got = await _count(systemd, 1.0)
        assert got.count("WATCHDOG=1\nSTATUS=windows: 4") >= 3

        moving = False  # the windows stopped
        await asyncio.sleep(0.3)  # let a heartbeat already on its way arrive
        assert "STATUS=stalled: no window sealed lately, watchdog withheld" in systemd.drain()
        assert not [m for m in await _count(systemd, 0.8) if "WATCHDOG=1" in m]
        assert "withholding the watchdog heartbeat" in caplog.text

        moving = True  # windows again: heartbeats again
        assert any("WATCHDOG=1" in m for m in await _count(systemd, 1.0))
        beat.cancel()
        with pytest.raises(asyncio.CancelledError):
            await beat
        n.close()

    with caplog.at_level(logging.INFO, logger="edge.sdnotify"):
        asyncio.run(main())


def test_a_watchdog_for_another_pid_sends_nothing(systemd):
    async def main() -> None:
        env = {
            "NOTIFY_SOCKET": systemd.address,
            "WATCHDOG_USEC": "200000",
            "WATCHDOG_PID": str(os.getpid() + 1),  # a parent's watchdog, not ours
        }
        n = Notifier(env)
        assert n.watchdog_s is None
        async with asyncio.timeout(2):
            await n.heartbeat(lambda: True)  # returns at once
        assert await _count(systemd, 0.5) == []
        n.close()

    asyncio.run(main())


def test_without_notify_socket_everything_is_a_no_op():
    async def main() -> None:
        n = Notifier({"WATCHDOG_USEC": "200000"})
        assert not n.enabled and n.watchdog_s is None
        assert not n.ready() and not n.watchdog() and not n.stopping()
        async with asyncio.timeout(2):
            await n.heartbeat(lambda: True)
        n.close()

    asyncio.run(main())
    assert not Notifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled  # a kind we do not speak


def test_a_failing_socket_is_logged_once_and_never_raises(tmp_path, caplog):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.WARNING, logger="edge.sdnotify"):
        assert not n.ready()
        assert not n.watchdog()
        assert not n.stopping()
    assert len([r for r in caplog.records if r.name == "edge.sdnotify"]) == 1
    n.close()


def test_progress_counts_from_creation_and_from_each_mark():
    now = [100.0]
    p = Progress(90.0, monotonic=lambda: now[0])
    assert p()
    now[0] = 190.0
    assert p()
    now[0] = 190.5
    assert not p()
    p.mark()
    now[0] = 280.0
    assert p()

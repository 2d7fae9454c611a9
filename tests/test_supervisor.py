"""The supervisor with a real Health and real asyncio tasks on a virtual clock: time only
moves when a test advances it, so backoffs of a minute and a quiet period of five take
no real time, and every step is deterministic."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time

import pytest

from edge.health import Health
from edge.supervisor import ALARM, DETAIL_MAX, Supervisor


class VirtualTime:
    """``sleep`` and ``monotonic`` for the supervisor; ``advance`` moves time forward and
    wakes the sleepers in order, letting every task run in between."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[tuple[str, float]] = []  # (task name, seconds)
        self._sleepers: list[tuple[float, int, asyncio.Future]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        task = asyncio.current_task()
        self.sleeps.append((task.get_name() if task else "?", seconds))
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._seq), fut))
        await fut

    def backoffs(self, name: str) -> list[float]:
        return [s for n, s in self.sleeps if n == name]

    async def advance(self, seconds: float) -> None:
        target = self.now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, fut = heapq.heappop(self._sleepers)
            self.now = max(self.now, when)
            if not fut.done():
                fut.set_result(None)
            await settle()
        self.now = target
        await settle()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def supervisor(vt: VirtualTime, health: Health, **kw) -> Supervisor:
    return Supervisor(health, sleep=vt.sleep, monotonic=vt.monotonic, **kw)


class Flaky:
    """A task body that raises on the calls listed in ``crash_on`` (1-based) and otherwise
    runs until cancelled (or until ``release`` is set, if it is to crash then)."""

    def __init__(self, crash_on: set[int] | None = None, exc: type[BaseException] = RuntimeError):
        self.crash_on = crash_on or set()
        self.exc = exc
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self) -> None:
        self.calls += 1
        if self.calls in self.crash_on:
            raise self.exc("outside bytes \x00\xff in the message")
        await asyncio.Event().wait()


def test_a_crash_is_logged_counted_alarmed_reported_and_restarted(caplog):
    async def main() -> None:
        vt, health = VirtualTime(), Health()
        crashes = []
        sup = supervisor(vt, health, on_crash=lambda name, exc: crashes.append((name, exc)))
        body = Flaky(crash_on={1})
        with caplog.at_level(logging.ERROR, logger="edge.supervisor"):
            sup.start("windows", body)
            await settle()
        assert health.counters["windows.crashes"] == 1
        assert health.alarms[ALARM] == "windows=RuntimeError"  # the type, never the message
        assert [(n, type(e)) for n, e in crashes] == [("windows", RuntimeError)]
        [record] = [r for r in caplog.records if r.name == "edge.supervisor"]
        assert record.exc_info is not None and record.exc_info[0] is RuntimeError
        assert "Traceback" in caplog.text
        assert body.calls == 1
        await vt.advance(0.49)
        assert body.calls == 1  # not before its backoff
        await vt.advance(0.02)
        assert body.calls == 2  # restarted, and now running fine
        assert health.counters["windows.crashes"] == 1
        assert await sup.stop() == []

    asyncio.run(main())


def test_the_hook_fires_on_every_crash_while_the_listener_fires_once():
    async def main() -> None:
        vt, health = VirtualTime(), Health()
        new_alarms: list[str] = []
        crashes: list[str] = []
        health.listener = new_alarms.append
        sup = supervisor(vt, health, on_crash=lambda name, exc: crashes.append(name))
        body = Flaky(crash_on={1, 2, 3})
        sup.start("health", body)
        await vt.advance(10)
        assert body.calls == 4
        assert crashes == ["health"] * 3  # every crash reports at once ...
        assert new_alarms == [ALARM]  # ... though the alarm was new only the first time
        assert health.counters["health.crashes"] == 3
        await sup.stop()

    asyncio.run(main())


def test_a_failing_hook_is_logged_and_the_task_still_restarts(caplog):
    async def main() -> None:
        vt, health = VirtualTime(), Health()

        def hook(name: str, exc: BaseException) -> None:
            raise ValueError("hook broke")

        sup = supervisor(vt, health, on_crash=hook)
        body = Flaky(crash_on={1})
        sup.start("bins", body)
        await vt.advance(1)
        assert body.calls == 2
        assert "on_crash hook failed" in caplog.text
        await sup.stop()

    asyncio.run(main())


def test_backoff_doubles_up_to_the_cap_and_resets_after_a_stable_run():
    async def main() -> None:
        vt, health = VirtualTime(), Health()
        sup = supervisor(vt, health, first_s=0.5, max_s=8.0, stable_s=60.0, quiet_s=1e6)
        calls = 0
        release = asyncio.Event()

        async def body() -> None:
            nonlocal calls
            calls += 1
            if calls == 8:  # this run lasts: it crashes only once the test releases it
                await release.wait()
            raise OSError("bus gone")

        sup.start("sensor:pm", body)
        await vt.advance(100)
        assert vt.backoffs("sensor:pm") == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
        assert calls == 8
        await vt.advance(61)  # the eighth run has been fine for a minute ...
        release.set()
        await settle()
        assert vt.backoffs("sensor:pm")[7:] == [0.5]  # ... so it restarts quickly again
        await vt.advance(0.6)
        assert calls == 9
        assert vt.backoffs("sensor:pm")[7:] == [0.5, 1.0]  # and quick crashes double again
        await sup.stop()

    asyncio.run(main())


def test_the_alarm_clears_after_the_quiet_period_and_the_counter_stays():
    async def main() -> None:
        vt, health = VirtualTime(), Health()
        sup = supervisor(vt, health, first_s=1.0, quiet_s=300.0)
        windows, publisher = Flaky(crash_on={1}), Flaky(crash_on={1}, exc=KeyError)
        sup.start("windows", windows)
        await vt.advance(100)
        sup.start("publisher", publisher)
        await settle()
        assert health.alarms[ALARM] == "publisher=KeyError, windows=RuntimeError"
        await vt.advance(200)  # windows restarted at t=1: quiet for 300 s at t=301
        assert ALARM in health.alarms
        await vt.advance(2)
        assert health.alarms[ALARM] == "publisher=KeyError"  # windows is well again
        await vt.advance(100)
        assert ALARM not in health.alarms
        assert health.counters == {"windows.crashes": 1, "publisher.crashes": 1}
        assert windows.calls == publisher.calls == 2
        await sup.stop()

    asyncio.run(main())


def test_a_task_crashing_again_keeps_the_alarm_up():
    async def main() -> None:
        vt, health = VirtualTime(), Health()
        sup = supervisor(vt, health, first_s=1.0, max_s=60.0, quiet_s=300.0)
        release = asyncio.Event()
        calls = 0

        async def body() -> None:
            nonlocal calls
            calls += 1
            if calls == 2:
                await release.wait()
            raise RuntimeError

        sup.start("windows", body)
        await vt.advance(250)
        release.set()  # crashes again at t=250, inside the quiet period
        await vt.advance(290)
        assert ALARM in health.alarms  # quiet counts from the latest restart
        await sup.stop()

    asyncio.run(main())


def test_a_normal_return_is_not_restarted_unless_asked():
    async def main() -> None:
        vt, health = VirtualTime(), Health()
        sup = supervisor(vt, health)
        runs = {"bins": 0, "once_more": 0}

        def body(name: str):
            async def run() -> None:
                runs[name] += 1

            return run

        bins = sup.start("bins", body("bins"))
        sup.start("once_more", body("once_more"), restart=True)
        await vt.advance(10)
        assert bins.done() and runs["bins"] == 1
        assert runs["once_more"] > 2
        assert not health.counters and not health.alarms
        await sup.stop()

    asyncio.run(main())


def test_a_stray_cancelled_error_from_inside_is_a_crash():
    async def main() -> None:
        vt, health = VirtualTime(), Health()
        sup = supervisor(vt, health)
        body = Flaky(crash_on={1}, exc=asyncio.CancelledError)  # not a cancellation of ours
        sup.start("publisher", body)
        await vt.advance(1)
        assert health.counters["publisher.crashes"] == 1
        assert body.calls == 2
        await sup.stop()

    asyncio.run(main())


def test_stop_is_prompt_even_when_a_task_swallows_a_cancellation():
    async def main() -> None:
        vt, health = VirtualTime(), Health()
        sup = supervisor(vt, health)
        swallowed = 0

        async def stubborn() -> None:
            nonlocal swallowed
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                swallowed += 1  # e.g. a cleanup that catches too much
            await asyncio.Event().wait()

        tasks = [sup.start("stubborn", stubborn), sup.start("plain", Flaky())]
        sup.start("crashing", Flaky(crash_on={1}))  # cancelled in its backoff
        await settle()
        t0 = time.monotonic()
        async with asyncio.timeout(4):
            assert await sup.stop(grace_s=3) == []
        assert time.monotonic() - t0 < 2.5
        assert swallowed == 1 and all(t.done() for t in tasks)
        with pytest.raises(RuntimeError):
            sup.start("late", Flaky())

    asyncio.run(main())


def test_stop_gives_up_on_a_task_that_ignores_every_cancellation(caplog):
    async def main() -> None:
        vt, health = VirtualTime(), Health()
        sup = supervisor(vt, health)
        let_go = False

        async def deaf() -> None:
            while not let_go:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    pass

        task = sup.start("deaf", deaf)
        await settle()
        async with asyncio.timeout(4):
            assert await sup.stop(grace_s=1) == ["deaf"]
        assert "ignored cancellation" in caplog.text
        let_go = True
        task.cancel()
        await asyncio.wait([task])

    asyncio.run(main())


def test_stop_by_name_then_join_lets_a_task_finish_by_itself():
    async def main() -> None:
        vt, health = VirtualTime(), Health()
        flush = asyncio.Event()

        async def publisher() -> None:
            await flush.wait()  # a clean stop: drains, says goodbye, returns

        async with supervisor(vt, health) as sup:
            windows = sup.start("windows", Flaky())
            pub = sup.start("publisher", publisher)
            await sup.stop(*[n for n in sup.names if n != "publisher"])
            assert windows.done() and not pub.done()
            assert not await sup.join("publisher", timeout=0.05)
            flush.set()
            assert await sup.join("publisher", timeout=2)
            assert sup.names == ["windows", "publisher"]

    asyncio.run(main())


def test_the_detail_is_bounded_and_names_are_checked():
    async def main() -> None:
        vt, health = VirtualTime(), Health()
        sup = supervisor(vt, health)
        for i in range(12):
            sup.start(f"sensor:a_long_sensor_name_{i:02d}", Flaky(crash_on={1}))
        await settle()
        detail = health.alarms[ALARM]
        assert len(detail) <= DETAIL_MAX and detail.endswith(" more")
        assert detail.startswith("sensor:a_long_sensor_name_00=RuntimeError, ")
        for bad in ("", "-x", "a b", "x\n", "a/" + "b" * 70):
            with pytest.raises(ValueError):
                sup.start(bad, Flaky())
        with pytest.raises(ValueError):
            sup.start("sensor:a_long_sensor_name_00", Flaky())  # already running
        await sup.stop()

    asyncio.run(main())

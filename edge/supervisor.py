"""One supervisor for the daemon's internal tasks, so that nothing dies quietly.

A window task that raised once used to stop the windows for good while health kept
reporting a live pole. Here a task that raises is logged with its traceback, counted
(``<task>.crashes``), raised as the ``task_crashed`` alarm and reported at once through
``on_crash`` (``Health.listener`` fires only for a *new* alarm, and a second crash must
be reported too), then restarted with exponential backoff. The alarm detail names tasks
and exception *types*, never messages: a message may quote bytes from outside, and the
detail leaves the pole. The alarm clears once every crashed task has run ``quiet_s``
without crashing again. A task that returns is done (the count bins of a pole without
count series have nothing to do), unless started with ``restart=True``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from edge.health import Health

log = logging.getLogger("edge.supervisor")

ALARM = "task_crashed"
DETAIL_MAX = 120  # characters of alarm detail; Health cuts at 200 anyway
RECANCEL_S = 0.5  # stop(): a task still running this long after a cancel is cancelled again
_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_CHARS = _FIRST | frozenset("-_.:/")  # a task name ends up in a SenML name (RFC 8428 4.5.1)

Factory = Callable[[], Coroutine[Any, Any, Any]]


class Supervisor:
    """Runs named asyncio tasks and restarts the ones that crash.

    Args:
        health: where crashes are counted and ``task_crashed`` is raised and cleared.
        on_crash: called with the task's name and exception after every crash (after the
            alarm is raised), e.g. to send a health message now.
        first_s: the delay before the first restart; doubled for each crash that follows
            a restart within ``stable_s``, up to ``max_s``.
        stable_s: a task that ran this long before crashing restarts after ``first_s``.
        quiet_s: the alarm clears when every crashed task has run this long since its
            restart without crashing again.
        sleep, monotonic: the clock, injectable for tests.
    """

    def __init__(
        self,
        health: Health,
        *,
        on_crash: Callable[[str, BaseException], None] | None = None,
        first_s: float = 0.5,
        max_s: float = 60.0,
        stable_s: float = 60.0,
        quiet_s: float = 300.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.health = health
        self.on_crash = on_crash
        self.first_s, self.max_s, self.stable_s, self.quiet_s = first_s, max_s, stable_s, quiet_s
        self._sleep, self._monotonic = sleep, monotonic
        self._tasks: dict[str, asyncio.Task] = {}
        self._crashed: dict[str, tuple[str, float]] = {}  # name -> (exception type, quiet from)
        self._halted: set[str] = set()
        self._quiet: asyncio.Task | None = None
        self._closed = False

    @property
    def names(self) -> list[str]:
        """The names of every task started, in start order (running or not)."""
        return list(self._tasks)

    def start(self, name: str, factory: Factory, *, restart: bool = False) -> asyncio.Task:
        """Run ``factory()`` as task ``name`` until it returns (and again if ``restart``),
        restarting it whenever it raises. Call from inside the running event loop."""
        if self._closed:
            raise RuntimeError("supervisor already stopped")
        if not name or name[0] not in _FIRST or not set(name) <= _CHARS or len(name) > 63:
            raise ValueError("task name %r: use letters, digits and - _ . : /" % name)
        if name in self._tasks and not self._tasks[name].done():
            raise ValueError("task %s is already running" % name)
        self._halted.discard(name)
        task = asyncio.create_task(self._keep(name, factory, restart), name=name)
        self._tasks[name] = task
        return task

    async def _keep(self, name: str, factory: Factory, restart: bool) -> None:
        delay = 0.0
        while True:
            started = self._monotonic()
            error: BaseException | None = None
            try:
                await factory()
            except asyncio.CancelledError as exc:
                # Ours (stop) or the loop's: end. A stray one from inside the task (it
                # awaited a future someone else cancelled) is a crash like any other.
                task = asyncio.current_task()
                if name in self._halted or (task is not None and task.cancelling()):
                    raise
                error = exc
            except Exception as exc:
                error = exc
            if name in self._halted:
                if error is not None:
                    log.error("task %s crashed while stopping", name, exc_info=error)
                return
            if error is None and not restart:
                log.info("task %s finished", name)
                return
            quick = delay > 0 and self._monotonic() - started < self.stable_s
            delay = min(delay * 2, self.max_s) if quick else self.first_s
            if error is None:
                log.info("task %s returned; starting it again in %.1f s", name, delay)
            else:
                self._crash(name, error, delay)
            await self._sleep(delay)

    def _crash(self, name: str, error: BaseException, delay: float) -> None:
        kind = type(error).__name__
        log.error("task %s crashed (%s); restarting in %.1f s", name, kind, delay, exc_info=error)
        self.health.count(name + ".crashes")
        self._crashed[name] = (kind, self._monotonic() + delay)
        self.health.raise_alarm(ALARM, self._detail())
        if self._quiet is None or self._quiet.done():
            self._quiet = asyncio.create_task(self._clear_when_quiet(), name="supervisor:quiet")
        if self.on_crash is not None:
            try:
                self.on_crash(name, error)
            except Exception:
                log.exception("on_crash hook failed for task %s", name)

    def _detail(self) -> str:
        """``name=Type, ...``, at most DETAIL_MAX characters (then ``+N more``)."""
        parts = ["%s=%s" % (n, kind) for n, (kind, _) in sorted(self._crashed.items())]
        text, dropped = ", ".join(parts), 0
        while len(text) > DETAIL_MAX:
            parts.pop()
            dropped += 1
            text = ", ".join([*parts, "+%d more" % dropped])
        return text

    async def _clear_when_quiet(self) -> None:
        while self._crashed:
            now = self._monotonic()
            due = min(since for _, since in self._crashed.values()) + self.quiet_s
            if now < due:
                await self._sleep(due - now)
                continue
            for name in [n for n, (_, t) in self._crashed.items() if t + self.quiet_s <= now]:
                del self._crashed[name]
            if self._crashed:
                self.health.raise_alarm(ALARM, self._detail())
            else:
                self.health.clear_alarm(ALARM)
                log.info("crashed tasks ran %.0f s without crashing again", self.quiet_s)

    async def join(self, *names: str, timeout: float) -> bool:
        """Wait (without cancelling) until the named tasks (all, if none named) have ended
        by themselves; True if they did within ``timeout`` seconds."""
        tasks = [self._tasks[n] for n in names or self._tasks if n in self._tasks]
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        return not pending

    async def stop(self, *names: str, grace_s: float = 5.0) -> list[str]:
        """Cancel the named tasks (all, and the supervisor for good, if none are named) and
        wait until they have ended. A task that swallows a cancellation is cancelled again
        every RECANCEL_S; after ``grace_s`` (real seconds) stop gives up on it, logs it
        and returns the names of the tasks still running (normally none)."""
        if not names:
            self._closed = True
            names = tuple(self._tasks)
        self._halted.update(names)
        pending = {self._tasks[n] for n in names if n in self._tasks}
        if self._closed and self._quiet is not None:
            pending.add(self._quiet)
        pending = {t for t in pending if not t.done()}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while pending and loop.time() < deadline:
            for task in pending:
                task.cancel()
            timeout = min(RECANCEL_S, deadline - loop.time())
            _, pending = await asyncio.wait(pending, timeout=max(timeout, 0.0))
        stuck = sorted(t.get_name() for t in pending)
        if stuck:
            log.error("tasks %s ignored cancellation for %.1f s; left running", stuck, grace_s)
        return stuck

    async def __aenter__(self) -> Supervisor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

"""The systemd notify protocol (sd_notify(3)), without a dependency: readiness, status
and a watchdog heartbeat that is only sent while the pole is making progress.

systemd passes a datagram socket in ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the
abstract namespace) and, with ``WatchdogSec=``, the interval in ``$WATCHDOG_USEC``
(and ``$WATCHDOG_PID``: the heartbeat is expected from that process only). A daemon
whose event loop is wedged sends nothing, so systemd restarts it; a daemon whose loop
runs but whose windows stopped would still be sending, which is why the heartbeat
asks a ``progress()`` predicate first (``Progress``: "a window was sealed lately").

Outside systemd (a laptop, the simulator, the tests of other modules) every call is
a no-op. Failing to send is logged once and never raised: the pole keeps working.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping

log = logging.getLogger("edge.sdnotify")


def watchdog_interval(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> float | None:
    """The watchdog interval in seconds asked for by systemd, or None when there is none
    for this process (unset, not a positive number, or ``$WATCHDOG_PID`` is another pid)."""
    env = os.environ if environ is None else environ
    owner = env.get("WATCHDOG_PID")
    if owner and owner.strip() != str(os.getpid() if pid is None else pid):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1e6 if usec > 0 else None


class Progress:
    """True while ``mark()`` was called within the last ``limit_s`` seconds (counting
    from creation, so a daemon that has just started is making progress).

    Args:
        limit_s: how long without a mark still counts as progress, in real seconds.
        monotonic: the clock, injectable for tests.
    """

    def __init__(self, limit_s: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.limit_s = limit_s
        self._monotonic = monotonic
        self.last = monotonic()

    def mark(self) -> None:
        self.last = self._monotonic()

    def __call__(self) -> bool:
        return self._monotonic() - self.last <= self.limit_s


class Notifier:
    """Talks to systemd through ``$NOTIFY_SOCKET``; reads the environment once, opens the
    socket on the first send.

    Args:
        environ: the environment to read (default ``os.environ``).
        pid: this process's id for the ``$WATCHDOG_PID`` check (default ``os.getpid()``).
    """

    def __init__(self, environ: Mapping[str, str] | None = None, *, pid: int | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # the abstract namespace
        elif not address.startswith("/"):
            address = ""  # unset, or a kind we do not speak (vsock: in VMs)
        self.address = address if hasattr(socket, "AF_UNIX") else ""
        self.watchdog_s = watchdog_interval(env, pid) if self.address else None
        self._sock: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields in one datagram; True if it left. Never blocks or raises."""
        if not self.address:
            return False
        data = "\n".join(f.replace("\n", " ") for f in fields).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            self._sock.sendto(data, self.address)
        except OSError as exc:
            if not self._failed:
                log.warning(
                    "cannot notify systemd at $NOTIFY_SOCKET (%s); readiness and watchdog "
                    "messages are lost (said once)",
                    exc,
                )
                self._failed = True
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *(["STATUS=" + status] if status else []))

    def status(self, text: str) -> bool:
        return self.send("STATUS=" + text)

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    async def heartbeat(
        self,
        progress: Callable[[], bool],
        *,
        status: Callable[[], str] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Send ``WATCHDOG=1`` every half watchdog interval while ``progress()`` is true,
        with ``STATUS=status()`` if given. Returns at once when systemd asked for no
        watchdog; otherwise runs until cancelled."""
        if self.watchdog_s is None:
            return
        stalled = False
        while True:
            if progress():
                if stalled:
                    log.info("progress again: watchdog heartbeat resumed")
                    stalled = False
                self.send("WATCHDOG=1", *(["STATUS=" + status()] if status else []))
            elif not stalled:
                log.error(
                    "no progress (no window sealed lately): withholding the watchdog heartbeat, "
                    "systemd will restart the daemon within %.0f s",
                    self.watchdog_s,
                )
                self.send("STATUS=stalled: no window sealed lately, watchdog withheld")
                stalled = True
            await sleep(self.watchdog_s / 2)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

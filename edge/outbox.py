"""Seal and store: every outgoing message gets a never-repeating cti, is signed as
COSE_Sign1 with its kind inside, and is written to the spool before any transport
may send it. Nothing here knows about topics: that is the transport's business.

cti = boot counter (persisted before first use) followed by a per-boot sequence,
so a cti never repeats for a key across any number of power cuts. If the spool
cannot be written (full disk, read-only medium) the message is kept in a bounded
RAM queue, a health alarm is raised, and live data keeps flowing.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque

from edge.clock import VALID_AFTER, Clock
from edge.cose import Signer, cti_bytes
from edge.health import Health
from edge.messages import kind as declared_kind
from edge.spool import Spool
from edge.state import PersistentCounter

log = logging.getLogger(__name__)


class Outbox:
    def __init__(
        self,
        signer: Signer,
        boot: PersistentCounter,
        spool: Spool,
        health: Health,
        clock: Clock | None = None,
        ram_limit: int = 1000,
    ) -> None:
        self.signer = signer
        self.boot_counter = boot
        self.clock = clock or Clock()
        self.boot = self._first_boot(boot, health)
        self.seq = 0
        self.spool = spool
        self.health = health
        self.ram: deque[tuple[str, bytes, bool]] = deque(maxlen=ram_limit)  # kind, msg, retain
        self.wakeup = asyncio.Event()

    def _first_boot(self, boot: PersistentCounter, health: Health) -> int:
        """The boot epoch for this run's ctis, persisted before first use.

        If the medium refuses the write, a time-derived epoch (seconds since 2026, far
        above any persisted count) keeps ctis unique as long as the clock is valid; the
        pole keeps publishing and raises an alarm. Without a valid clock there is no
        safe epoch, and that error propagates: better silent than replayable.
        """
        try:
            return boot.advance()
        except OSError as exc:
            if not self.clock.valid():
                raise
            epoch = int(self.clock.wall() - VALID_AFTER)
            boot.value = max(boot.value, epoch)
            health.raise_alarm("state_unwritable", f"boot counter: {exc}")
            log.error("cannot persist the boot counter (%s); using time-derived epoch", exc)
            return boot.value

    def seal(self, kind: str, payload: bytes) -> bytes:
        """Sign ``payload`` as a message of ``kind`` with the next cti; never reuses one."""
        self.seq += 1
        if self.seq > 0xFFFFFFFF:  # a new boot epoch rather than wrap around
            self.boot = self.boot_counter.advance()
            self.seq = 1
        iat = int(self.clock.wall()) if self.clock.valid() else None
        return self.signer.sign(kind, payload, iat, cti_bytes(self.boot, self.seq))

    def post(self, kind: str, payload: bytes) -> bytes:
        """Seal, store durably, and wake the transport. Returns the signed message.
        Whether it is retained is the kind's declaration (edge/messages.py)."""
        retain = declared_kind(kind).retained
        message = self.seal(kind, payload)
        try:
            self.spool.put(kind, message, retain)
        except sqlite3.Error as exc:
            if len(self.ram) == self.ram.maxlen:
                self.health.count("ram_queue_dropped")
            self.ram.append((kind, message, retain))
            self.health.count("spool_write_errors")
            if self.health.raise_alarm("spool_unwritable", str(exc)):
                log.error(
                    "cannot write the spool %s (%s): keeping messages in RAM; free disk "
                    "space or fix the medium",
                    self.spool.path,
                    exc,
                )
        else:
            if not self.spool.volatile and self.health.clear_alarm("spool_unwritable"):
                log.warning("spool %s writable again", self.spool.path)
        self.wakeup.set()
        return message

"""Transports: how sealed messages leave the pole. The seam between the pole and the wire.

The outbox seals every message (kind, payload) and stores it in the spool; a transport
drains the spool and deletes a message only once it is safely delivered. A transport
owns everything about the wire: topics, retained flags, sessions (birth and death).
Adding one (HTTP POST to the city, a satellite modem) is one module with a class that
implements ``deliver(rows, replay)`` and a ``run`` that calls ``drain``; the drain order
(live first, backlog interleaved), the bookkeeping and the clean stop are shared.

- ``edge.transport.mqtt``: MQTT 5 with Sparkplug-style birth and death (the default).
- ``edge.transport.filedrop``: signed messages as files in a folder, for air-gapped
  poles and tests; the same bytes, verifiable with any COSE library.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from edge.health import Health
from edge.outbox import Outbox
from edge.state import PersistentCounter

log = logging.getLogger(__name__)

BATCH = 32
Row = tuple[int, str, bytes, bool]  # spool id, kind, signed message, retained


class Transport:
    """Drains the outbox's spool through ``deliver``; subclasses add the wire."""

    def __init__(
        self,
        outbox: Outbox,
        bdseq: PersistentCounter,
        birth_payload: Callable[[int], bytes],
        death_payload: Callable[[int], bytes],
        health: Health,
    ) -> None:
        self.outbox = outbox
        self.bdseq = bdseq
        self.birth_payload = birth_payload
        self.death_payload = death_payload
        self.health = health
        self.connected = asyncio.Event()
        self.published = 0
        self.replayed = 0
        self._stopping = False

    async def run(self) -> None:
        raise NotImplementedError  # every transport defines its own session loop

    async def deliver(self, rows: list[Row], replay: bool) -> tuple[list[int], Exception | None]:
        """Send ``rows``: the spool ids now safely delivered, and the error that ends the
        session if one happened (what was delivered before it is still booked)."""
        raise NotImplementedError  # every transport defines its own wire

    def stop(self) -> None:
        """Finish: deliver what is pending now, then end the session cleanly."""
        self._stopping = True
        self.outbox.wakeup.set()

    def next_bdseq(self) -> int:
        """Persist the next bdSeq; if the medium refuses, go on in RAM and raise an alarm
        (a repeated bdSeq after a later reboot is far less harmful than a silent pole)."""
        try:
            value = self.bdseq.advance()
        except OSError as exc:
            self.health.count("state_write_errors")
            self.health.raise_alarm("state_unwritable", str(exc))
            return self.bdseq.value
        self.health.clear_alarm("state_unwritable")
        return value

    async def _deliver_rows(self, rows: list[Row], replay: bool) -> None:
        done, error = await self.deliver(rows, replay)
        if done:
            stored = [i for i in done if i]  # id 0: from the RAM queue, never in the spool
            if stored:
                self.outbox.spool.ack(*stored)
            self.published += len(done)
            if replay:
                self.replayed += len(done)
        if error is not None:
            raise error

    async def drain(self) -> None:
        """Send live messages first, the backlog in between, each oldest first, until
        ``stop()``; then whatever is pending at that moment, and return.

        Live = sealed after this session started; backlog = sealed before (during an
        outage or before a power cut). Every round sends up to BATCH live messages and
        then up to BATCH backlog messages, so a long backlog never holds live data back
        by more than one batch, and the backlog still drains at full speed.
        """
        outbox = self.outbox
        spool = outbox.spool
        rotations = spool.pending(BATCH, kind="rotate")
        if rotations:  # a key rotation must reach the city before anything under the new key
            await self._deliver_rows(rotations, replay=False)
        live_from = spool.last_id()
        backlog_after = 0
        while True:
            stopping = self._stopping
            while outbox.ram:
                kind, message, retain = outbox.ram[0]
                await self._deliver_rows([(0, kind, message, retain)], replay=False)
                outbox.ram.popleft()
            live = spool.pending(BATCH, after_id=live_from)
            backlog = spool.pending(BATCH, after_id=backlog_after, upto_id=live_from)
            if backlog:
                backlog_after = backlog[-1][0]
            if live:
                await self._deliver_rows(live, replay=False)
            if backlog:
                await self._deliver_rows(backlog, replay=True)
            if live or backlog:
                continue
            if stopping:
                return
            outbox.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await outbox.wakeup.wait()

"""The file drop: signed messages as files in a folder, for air-gapped poles and tests.

The same signed bytes as on MQTT, one file each, at
``<dir>/<pole_id>/<kind>/<cti as 16 hex digits>.cose``: the kind is declared inside
the signature anyway (edge/messages.py), the folder just sorts. A file is written
atomically (temporary file, fsync, rename, fsync the folder) before its message
leaves the spool, so a power cut leaves either no file or the whole file, and a
message written twice (a crash between the rename and the spool's delete) lands on
the same name with the same bytes. A session is the time from start to a clean stop:
its birth is written first, its death (sealed at the start, like an MQTT will) last.

Read them with ``pole-admin verify --files DIR`` or any COSE library.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from edge import cbordecode
from edge.cose import CWT_CTI, HDR_CWT_CLAIMS
from edge.state import atomic_write
from edge.transport import Row, Transport

log = logging.getLogger(__name__)


def file_name(message: bytes) -> str:
    """``<cti hex>.cose`` of one of our own sealed messages."""
    envelope = cbordecode.loads(message, tags=(18,))
    protected = cbordecode.loads(envelope.value[0])
    return protected[HDR_CWT_CLAIMS][CWT_CTI].hex() + ".cose"


class FileDropTransport(Transport):
    def __init__(self, directory: Path, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.dir = Path(directory) / self.outbox.signer.pole_id

    def write(self, kind: str, message: bytes) -> Path:
        folder = self.dir / kind
        folder.mkdir(parents=True, exist_ok=True, mode=0o755)
        path = folder / file_name(message)
        atomic_write(path, message, mode=0o644)
        return path

    async def run(self) -> None:
        backoff = 1.0
        while True:
            bdseq = self.next_bdseq()
            death = self.outbox.seal("death", self.death_payload(bdseq))
            try:
                self.write("birth", self.outbox.seal("birth", self.birth_payload(bdseq)))
                self.connected.set()
                self.health.clear_alarm("transport_unwritable")
                await self.drain()
                self.write("death", death)
                return
            except OSError as exc:
                self.health.count("transport_errors")
                if self.health.raise_alarm("transport_unwritable", str(exc)):
                    log.error(
                        "cannot write the file drop %s (%s); messages stay in the spool. "
                        "Check free space and permissions.",
                        self.dir,
                        exc,
                    )
            finally:
                self.connected.clear()
            if self._stopping:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def deliver(self, rows: list[Row], replay: bool) -> tuple[list[int], Exception | None]:
        done: list[int] = []
        for spool_id, kind, message, _retain in rows:
            try:
                self.write(kind, message)
            except OSError as exc:
                return done, exc
            done.append(spool_id)
        return done, None

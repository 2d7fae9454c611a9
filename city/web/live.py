"""The city's side beside simulated poles, in one process: what ``pole-sim demo`` and the
browser tests run.

An ingest worker (city/ingest.py, the same code ``python -m city.cli ingest`` runs) in
the caller's event loop, on its own MQTT 5 session, writes what it verifies into a
store (a SQLite file by default); the keys come from the poles' trust list, synchronised
into the store once at start (city/keys.py; the worker polls the store for more). The
web service (city/web/app.py) runs in a thread of its own over the same store. So the
map shows exactly what the city's real pipeline stored, and nothing the simulator
knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from city.ingest import Worker, WorkerConfig
from city.keys import sync_trust
from city.store import open_store
from city.web.app import Settings, WebServer


class LiveCity:
    """Args:
    work: where the store lives (``city.sqlite``) unless ``db`` is given.
    broker: the poles' broker (MQTT 5: the worker acknowledges after commit).
    trust: the trust list file (``pole-admin trust``) with the poles' keys.
    prefix: the poles' topic prefix.
    host, port: where the web service listens (port 0: a free one).
    silent_after_s: a pole heard from for this long shows as silent.
    title: the service's name on its pages.
    """

    def __init__(
        self,
        work: Path,
        broker: str,
        trust: Path,
        *,
        prefix: str = "poles",
        host: str = "127.0.0.1",
        port: int = 0,
        silent_after_s: float = 30.0,
        title: str = "Light poles of the city",
        db: str | None = None,
    ) -> None:
        self.db = db or f"sqlite:///{work / 'city.sqlite'}"
        self.broker = broker
        self.trust = trust
        self.prefix = prefix
        self.web = WebServer(
            Settings(db=self.db, title=title, silent_after_s=silent_after_s), host, port
        )
        self.url = self.web.url
        self.web.service.settings.public_url = f"{self.url}/poles"
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.worker: Worker | None = None

    async def start(self) -> str:
        """Prepare the store, start the worker and the web service; the map's URL."""
        store = open_store(self.db)
        try:
            await asyncio.to_thread(store.migrate)
            await asyncio.to_thread(sync_trust, store, self.trust)
        finally:
            store.close()
        cfg = WorkerConfig(
            index=1,
            broker=self.broker,
            db=self.db,
            client_id="city-live-" + os.urandom(4).hex(),
            group="city-live-" + os.urandom(2).hex(),
            prefix=self.prefix,
            session_expiry_s=0,  # nothing of ours stays in the broker afterwards
            key_poll_s=1.0,
            stop_grace_s=2.0,
        )
        self.worker = Worker(cfg)
        self._task = asyncio.create_task(self.worker.run(self._stop))
        await asyncio.to_thread(self.web.start)
        return f"{self.url}/map"

    async def stop(self) -> None:
        """Commit what the worker holds, then stop it and the web service."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, 10)
        await asyncio.to_thread(self.web.stop)

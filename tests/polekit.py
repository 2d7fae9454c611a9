"""Running simulated poles and a verifier against a real broker, for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from host_sim.pole import SimPole
from provisioning.receiver import Store, run_receiver
from provisioning.trustlist import TrustList, load_keys
from provisioning.verifier import Verdict, Verifier


class Fixed:
    """A world where nothing changes: sensors see constant values (for exact checks)."""

    CLIMATE = {"temperature": 18.25, "humidity": 61.5, "pressure": 101_210.0}
    AIR = {"pm2_5": 12.3, "pm10": 45.6}

    def climate(self) -> dict[str, float]:
        return dict(self.CLIMATE)

    def air(self) -> dict[str, float]:
        return dict(self.AIR)


class Harness:
    """N poles + a verifier with a persistent session, all in one event loop."""

    def __init__(
        self,
        work: Path,
        broker_url: str,
        n: int = 2,
        window_s: int = 1,
        world=None,
        state_root: Path | None = None,
        sensors: str = "basic",
        **pole_options: object,
    ) -> None:
        # A topic prefix of its own: retained births of other tests on a shared broker
        # are not this harness's business.
        self.prefix = "t" + os.urandom(4).hex()
        self.work = work
        self.broker_url = broker_url
        trust = TrustList(work / "trust.sqlite")
        self.poles = []
        for i in range(n):
            pid = f"nl-test-{i + 1:04d}"
            sp = SimPole(
                pid,
                (state_root or work) / pid,
                broker_url,
                world or Fixed(),
                window_s=window_s,
                health_s=2,
                topic_prefix=self.prefix,
                sensors=sensors,
                **pole_options,
            )
            trust.add(pid, sp.identity.public_key)
            self.poles.append(sp)
        trust.export_file(work / "trust.json")
        trust.close()
        self.verifier = Verifier(load_keys(work / "trust.json"), topic_prefix=self.prefix)
        self.store = Store(work / "received.sqlite")
        self.verdicts: list[tuple[str, Verdict]] = []
        self.raw: list[tuple[str, bytes]] = []
        self._stop_recv = asyncio.Event()
        self._stop_poles = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def _on(self, topic: str, v: Verdict) -> None:
        self.verdicts.append((topic, v))

    async def start(self) -> None:
        ready = asyncio.Event()
        orig = self.verifier.check

        def capture(topic: str, payload: bytes) -> Verdict:
            self.raw.append((topic, payload))
            return orig(topic, payload)

        self.verifier.check = capture  # type: ignore[method-assign]
        self._recv = asyncio.create_task(
            run_receiver(
                self.broker_url,
                self.verifier,
                self._on,
                self._stop_recv,
                store=self.store,
                ready=ready,
                client_id=f"verifier-{self.prefix}",
            )
        )
        await asyncio.wait_for(ready.wait(), 15)
        self._tasks = [asyncio.create_task(p.run(self._stop_poles)) for p in self.poles]

    async def stop_poles(self) -> None:
        self._stop_poles.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self, settle: float = 1.0) -> None:
        if not self._stop_poles.is_set():
            await self.stop_poles()
        await asyncio.sleep(settle)
        self._stop_recv.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self._recv, 10)
        # The store stays open for the test's assertions.

    def accepted(self, pole_id: str | None = None, kind: str | None = None) -> list[Verdict]:
        return [
            v
            for _, v in self.verdicts
            if v.status == "accepted"
            and (pole_id is None or v.pole_id == pole_id)
            and (kind is None or v.kind == kind)
        ]

    def rejected(self) -> list[Verdict]:
        return [v for _, v in self.verdicts if v.status == "rejected"]


class Receiver:
    """Just the verifier side, with a persistent session and raw capture."""

    def __init__(self, work: Path, broker_url: str) -> None:
        self.verifier = Verifier(load_keys(work / "trust.json"))
        self.store = Store(work / "received.sqlite")
        self.broker_url = broker_url
        self.verdicts: list[tuple[str, Verdict]] = []
        self.raw: list[tuple[str, bytes]] = []
        self._stop = asyncio.Event()
        orig = self.verifier.check

        def capture(topic: str, payload: bytes) -> Verdict:
            self.raw.append((topic, payload))
            return orig(topic, payload)

        self.verifier.check = capture  # type: ignore[method-assign]

    async def start(self) -> None:
        ready = asyncio.Event()
        self._task = asyncio.create_task(
            run_receiver(
                self.broker_url,
                self.verifier,
                lambda t, v: self.verdicts.append((t, v)),
                self._stop,
                store=self.store,
                ready=ready,
                client_id="test-receiver",
            )
        )
        await asyncio.wait_for(ready.wait(), 15)

    async def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(self._task, 10)
        self.store.close()

    def ctis(self, kind: str | None = None, statuses=("accepted", "duplicate")) -> set[int]:
        return {
            v.cti
            for _, v in self.verdicts
            if v.status in statuses and (kind is None or v.kind == kind)
        }


def register(work: Path, *pole_ids: str) -> None:
    """Create each pole's identity in work/<pole_id> and export the trust list."""
    from edge.state import create_identity

    trust = TrustList(work / "trust.sqlite")
    for pid in pole_ids:
        ident = create_identity(work / pid, pid)
        trust.add(pid, ident.public_key)
    trust.export_file(work / "trust.json")
    trust.close()


def spooled_ctis(spool_path: Path) -> dict[int, bytes]:
    """cti -> payload of every message in a spool file (read-only, as a second reader)."""
    import sqlite3

    import cbor2

    out = {}
    db = sqlite3.connect(f"file:{spool_path}?mode=ro", uri=True)
    try:
        for (payload,) in db.execute("SELECT payload FROM spool"):
            prot = cbor2.loads(cbor2.loads(payload).value[0])
            out[int.from_bytes(prot[15][7], "big")] = payload
    finally:
        db.close()
    return out

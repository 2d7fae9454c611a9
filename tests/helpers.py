"""Small builders shared by tests (not fixtures: plain functions)."""

from __future__ import annotations

import os

from edge import senml
from edge.cose import Signer, cti_bytes
from provisioning.trustlist import KeyRecord

NOW = 1_800_000_000


def signer(pole_id: str = "nl-ex-0001", seed: bytes | None = None) -> Signer:
    return Signer(seed or os.urandom(32), pole_id)


def keys_for(*signers: Signer, status: str = "active") -> dict:
    return {s.kid: KeyRecord(s.pole_id, s.public_key, status) for s in signers}


def data_payload(pole_id: str = "nl-ex-0001", value: float = 21.5) -> bytes:
    return senml.encode_pack(
        [
            [
                (senml.BN, pole_id + "/"),
                (senml.BT, NOW),
                (0, "bme280/temperature/mean"),
                (1, "Cel"),
                (2, value),
            ]
        ]
    )


def kind_payload(kind: str, pole_id: str = "nl-ex-0001") -> bytes:
    """A small, declared pack of ``kind`` (edge/messages.py)."""
    from edge import messages

    items = {
        "birth": [("bdSeq", 7)],
        "death": [("bdSeq", 7)],
        "health": [("time/valid", True)],
        "counts": [("bin", 900)],
        "manifest": [("privacy/k", 10)],
    }
    if kind == "data":
        return data_payload(pole_id)
    return messages.pack(messages.kind(kind), pole_id, NOW, items[kind])


def message(
    s: Signer,
    seq: int,
    boot: int = 1,
    payload: bytes | None = None,
    iat: int = NOW,
    kind: str = "data",
) -> bytes:
    payload = payload or kind_payload(kind, s.pole_id)
    return s.sign(kind, payload, iat, cti_bytes(boot, seq))


def topic(s: Signer, kind: str = "data") -> str:
    return f"poles/{s.pole_id}/{kind}"


def read_through_pty(sim, driver_cls, baud: int, step_s: float = 0.5, tries: int = 50):
    """The first reading a driver gets from a simulator on a real pty through pyserial,
    with the simulator's clock stepped by ``step_s`` per try; None if none came."""
    import time

    from edge.bus.linux import SerialUART
    from host_sim.serial_pty import PtySerial

    t = [0.0]
    pty = PtySerial(sim, clock=lambda: t[0])
    uart = SerialUART(pty.path, baud)
    try:
        drv = driver_cls(uart)
        drv.start()
        for _ in range(tries):
            t[0] += step_s
            pty.pump()
            time.sleep(0.01)
            got = drv.read()
            if got:
                return got
        return None
    finally:
        uart.close()
        pty.close()

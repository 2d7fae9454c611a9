"""Keys over time at a running verifier: `pole-admin verify` picks up a revocation made
while it runs (no restart), and after a restart an old message is still a replay,
because its replay state lives in its store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge.cose import Signer, cti_bytes
from provisioning.trustlist import TrustList
from tests.helpers import kind_payload
from tests.test_interop import ROOT

pytestmark = pytest.mark.broker
POLE = "nl-time-0001"


def _publish(url_port: int, msgs: list[bytes]) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", url_port)
    c.loop_start()
    for m in msgs:
        c.publish(f"poles/{POLE}/data", m, qos=1).wait_for_publish(10)
    c.loop_stop()
    c.disconnect()


class Verify:
    """`pole-admin verify` as a process, its output in a file."""

    def __init__(self, tmp: Path, port: int, trust: Path, store: Path, tag: str) -> None:
        self.out = tmp / f"verify-{tag}.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "provisioning.cli",
                "verify",
                "--broker",
                f"mqtt://127.0.0.1:{port}",
                "--trust",
                str(trust),
                "--store",
                str(store),
                "--client-id",
                "verify-over-time",
                "--replay-window",
                "4",
            ],
            stdout=self.out.open("w"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines()

    def wait_for(self, what: str, count: int = 1, timeout: float = 15) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [ln for ln in self.lines() if what in ln]
            if len(hits) >= count:
                return hits
            time.sleep(0.1)
        raise AssertionError(f"{what!r} x{count} not seen; output:\n" + "\n".join(self.lines()))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(15)


def test_revocation_takes_effect_without_restart_and_replays_survive_one(mosquitto, tmp_path):
    signer = Signer(os.urandom(32), POLE)
    trust = tmp_path / "trust.sqlite"
    with TrustList(trust) as tl:
        tl.add(POLE, signer.public_key)
    store = tmp_path / "store.sqlite"
    msgs = [
        signer.sign("data", kind_payload("data", POLE), int(time.time()), cti_bytes(1, i))
        for i in range(1, 8)
    ]

    v = Verify(tmp_path, mosquitto.port, trust, store, "1")
    try:
        time.sleep(2)  # subscribed
        _publish(mosquitto.port, msgs[:6])  # ctis 1..6; with a window of 4 the floor is 2
        v.wait_for("verified data", 6)
    finally:
        v.stop()

    v = Verify(tmp_path, mosquitto.port, trust, store, "2")  # a restart, same store
    try:
        time.sleep(2)
        _publish(mosquitto.port, [msgs[0]])  # cti 1: below the floor the store kept
        v.wait_for("REJECTED")
        assert "replay" in v.wait_for("REJECTED")[0]
        _publish(mosquitto.port, [msgs[5]])  # cti 6: seen, stored once
        v.wait_for("duplicate")
        # Revoke while it runs: the next message is refused, no restart.
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "provisioning.cli",
                "trust",
                "revoke",
                "--db",
                str(trust),
                "--pole-id",
                POLE,
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        time.sleep(2.5)  # the verifier checks the trust list every second
        _publish(mosquitto.port, [msgs[6]])
        hits = v.wait_for("REJECTED", 2)
        assert "revoked" in hits[1], hits
    finally:
        v.stop()
    assert "verified data" not in "\n".join(v.lines())

"""Keys over time (issue 13): a stolen key cannot re-key its pole.

Whoever steals a pole's key can sign a rotation announcement with it: the verifier then
adds the thief's own key to the trust list, "rotated from" the stolen one. So:
- the trust list records which key a key was rotated from (``rotated_from``, added in
  place to trust lists made before it existed);
- ``trust revoke --compromised`` revokes the key and every key rotated from it,
  transitively, and says how many; a running verifier picks that up without a restart;
- a rotation signed with a key revoked for theft adds nothing; and one that reaches a
  verifier before it reloaded the revocation adds its key revoked, at once.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from edge.cose import Signer, cti_bytes
from edge.rotation import ANNOUNCEMENT, rotate
from edge.state import KEY_FILE, PUB_FILE, Identity, create_identity
from provisioning.cli import main as admin
from provisioning.receiver import TrustWatch
from provisioning.trustlist import TrustError, TrustList, load_keys
from provisioning.verifier import Verifier
from tests.helpers import NOW, data_payload

POLE = "nl-ex-0001"
TOPIC = f"poles/{POLE}/"


def key(n: int) -> bytes:
    return Signer(bytes([n]) * 32, POLE).public_key


def kid(n: int) -> str:
    return Signer(bytes([n]) * 32, POLE).kid.hex()


def revoke_compromised(db: Path, kid_hex: str) -> int:
    """``pole-admin trust revoke --kid KID --compromised``, as the city types it."""
    return admin(["trust", "revoke", "--db", str(db), "--kid", kid_hex, "--compromised"])


def status(db: Path) -> dict[str, str]:
    with TrustList(db) as tl:
        return {r.kid.hex(): r.status for r in tl.records()}


def data(seed: bytes, seq: int, boot: int = 1) -> bytes:
    return Signer(seed, POLE).sign("data", data_payload(POLE), NOW, cti_bytes(boot, seq))


def steal(pole_dir: Path, thief_dir: Path) -> None:
    """The thief copies the controller's key (mode kept: it stays a private file)."""
    thief_dir.mkdir()
    for name in (KEY_FILE, PUB_FILE):
        shutil.copy2(pole_dir / name, thief_dir / name)


def thief_rotates(thief_dir: Path) -> tuple[Identity, bytes]:
    """The thief's own new key, and its announcement signed with the stolen key."""
    new = rotate(thief_dir)
    return new, (thief_dir / ANNOUNCEMENT).read_bytes()


# -- the trust list --------------------------------------------------------------------------
def test_rotated_from_is_recorded_and_old_trust_lists_are_migrated_in_place(tmp_path):
    db = tmp_path / "trust.sqlite"
    old = sqlite3.connect(db)  # a trust list as the version before made it
    old.execute(
        "CREATE TABLE keys (kid TEXT PRIMARY KEY, pole_id TEXT NOT NULL, public_key TEXT NOT "
        "NULL, status TEXT NOT NULL CHECK (status IN ('active', 'revoked')), added REAL NOT "
        "NULL, revoked REAL, note TEXT NOT NULL DEFAULT '')"
    )
    rows = [
        (kid(1), key(1), "provisioned", 1.0),
        (kid(2), key(2), f"rotated from {kid(1)}", 2.0),  # what the verifier wrote then
        (kid(3), key(3), "rotated from somewhere else", 3.0),  # not a kid of the list
    ]
    for k, pk, note, added in rows:
        old.execute(
            "INSERT INTO keys VALUES (?, ?, ?, 'active', ?, NULL, ?)",
            (k, POLE, pk.hex(), added, note),
        )
    old.commit()
    old.close()

    with TrustList(db) as tl:
        got = {r.kid.hex(): r.rotated_from for r in tl.records()}
        assert got == {kid(1): None, kid(2): kid(1), kid(3): None}
        rec = tl.add(POLE, key(4), note="rotated", rotated_from=kid(2))
        assert rec.active and rec.rotated_from == kid(2)
    with TrustList(db) as tl:  # opening it again changes nothing
        assert tl.rotated_from_keys([kid(1)]) == [kid(2), kid(4)]
    assert load_keys(db)[bytes.fromhex(kid(4))].rotated_from == kid(2)


def test_revoking_a_compromised_key_revokes_every_key_rotated_from_it(tmp_path):
    db = tmp_path / "trust.sqlite"
    with TrustList(db) as tl:
        tl.add(POLE, key(1))
        tl.add(POLE, key(2), rotated_from=kid(1))  # 1 -> 2 -> 3, and 2 -> 5
        tl.add(POLE, key(3), rotated_from=kid(2))
        tl.add(POLE, key(5), rotated_from=kid(2))
        tl.add(POLE, key(4))  # a replacement controller's key: not rotated from 1
        tl.add("nl-ex-0002", Signer(bytes([9]) * 32, "nl-ex-0002").public_key)
        assert tl.rotated_from_keys([kid(1)]) == [kid(2), kid(3), kid(5)]
        assert tl.revoke(kid=kid(2)) == 1  # an ordinary revocation: that key only
        assert tl.revoke(kid=kid(1), compromised=True) == 3  # 1, and 3 and 5 (2 was already)
    st = status(db)
    assert [st[kid(n)] for n in (1, 2, 3, 4, 5)] == ["revoked"] * 3 + ["active", "revoked"]
    assert list(st.values()).count("active") == 2  # key 4 and the other pole's
    with TrustList(db) as tl:
        with pytest.raises(TrustError, match="belongs to pole"):
            tl.add("nl-ex-0002", key(6), rotated_from=kid(1))
        with pytest.raises(TrustError, match="pole id"):
            tl.add("nl-ex-0001\n", key(6))


def test_trust_revoke_compromised_on_the_command_line(tmp_path, capsys):
    db = tmp_path / "trust.sqlite"
    with TrustList(db) as tl:
        tl.add(POLE, key(1))
        tl.add(POLE, key(2), rotated_from=kid(1))
        tl.add(POLE, key(3), rotated_from=kid(2))
    with pytest.raises(SystemExit):
        admin(["trust", "revoke", "--help"])
    helptext = capsys.readouterr().out
    assert "--compromised" in helptext and "rotated from it" in helptext
    rc = admin(["trust", "revoke", "--db", str(db), "--kid", kid(1).upper(), "--compromised"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "revoked 3 key(s)" in out
    assert "2 key(s) rotated from it (directly or in turn) revoked with it" in out
    assert kid(2) in out and kid(3) in out
    assert f"pole {POLE} has no active key left" in err and "replace-controller" in err
    assert set(status(db).values()) == {"revoked"}
    with pytest.raises(SystemExit):
        admin(["trust", "revoke", "--db", str(db), "--kid", "not-a-kid"])
    assert "16 hex digits" in capsys.readouterr().err


# -- the verifier ------------------------------------------------------------------------------
def test_a_rotation_signed_with_a_key_revoked_for_theft_adds_no_key(tmp_path):
    db = tmp_path / "trust.sqlite"
    pole = create_identity(tmp_path / "pole", POLE)
    trust = TrustList(db)
    trust.add(POLE, pole.public_key)
    verifier = Verifier(load_keys(db), trust=trust)
    assert verifier.check(TOPIC + "data", data(pole.seed, 1)).accepted

    steal(tmp_path / "pole", tmp_path / "thief")
    assert revoke_compromised(db, pole.kid.hex()) == 0
    verifier.set_keys(load_keys(db))  # what TrustWatch does when the file changes

    thief, announcement = thief_rotates(tmp_path / "thief")
    v = verifier.check(TOPIC + "rotate", announcement)
    assert v.status == "rejected" and v.reason.startswith("kid:") and "revoked" in v.reason
    assert thief.kid not in verifier.keys
    assert thief.kid not in {r.kid for r in trust.records()}
    v = verifier.check(TOPIC + "data", data(thief.seed, 1, boot=50))
    assert v.status == "rejected" and "unknown key" in v.reason
    assert verifier.check(TOPIC + "data", data(pole.seed, 2)).status == "rejected"
    trust.close()


def test_revoking_after_the_thief_rotated_revokes_the_thief_key_in_a_running_verifier(tmp_path):
    """The theft is noticed late: the thief's rotation was accepted and their key is in
    the trust list. ``trust revoke --compromised`` on the stolen key revokes it too, and
    the running verifier (TrustWatch on the SQLite file) refuses it from the next message."""
    db = tmp_path / "trust.sqlite"
    pole = create_identity(tmp_path / "pole", POLE)
    trust = TrustList(db)
    trust.add(POLE, pole.public_key)
    verifier = Verifier(load_keys(db), trust=trust)
    steal(tmp_path / "pole", tmp_path / "thief")
    thief, announcement = thief_rotates(tmp_path / "thief")
    assert verifier.check(TOPIC + "rotate", announcement).accepted
    assert verifier.check(TOPIC + "data", data(thief.seed, 1, boot=50)).accepted
    rec = {r.kid: r for r in trust.records()}[thief.kid]
    assert rec.active and rec.rotated_from == pole.kid.hex()

    async def go() -> None:
        stop = asyncio.Event()
        watch = TrustWatch(db, verifier, interval=0.05)
        task = asyncio.create_task(watch.run(stop))
        try:
            await asyncio.sleep(0.1)
            assert await asyncio.to_thread(revoke_compromised, db, pole.kid.hex()) == 0
            deadline = time.monotonic() + 10
            while watch.reloads == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert watch.reloads >= 1
        finally:
            stop.set()
            await task

    asyncio.run(go())
    v = verifier.check(TOPIC + "data", data(thief.seed, 2, boot=50))
    assert v.status == "rejected" and "revoked" in v.reason, v
    v = verifier.check(TOPIC + "data", data(pole.seed, 3))
    assert v.status == "rejected" and "revoked" in v.reason, v
    # Nor can the thief rotate on, from either key.
    again, announcement2 = thief_rotates(tmp_path / "thief")
    assert verifier.check(TOPIC + "rotate", announcement2).status == "rejected"
    assert again.kid not in {r.kid for r in trust.records()}
    trust.close()


def test_a_rotation_that_beats_the_reload_adds_its_key_revoked_at_once(tmp_path):
    """The stolen key is revoked in the file, the verifier has not reloaded yet, and the
    thief's rotation arrives in between: its key is recorded revoked (with the key it was
    rotated from), and the verifier refuses it from the next message."""
    db = tmp_path / "trust.sqlite"
    pole = create_identity(tmp_path / "pole", POLE)
    trust = TrustList(db)
    trust.add(POLE, pole.public_key)
    verifier = Verifier(load_keys(db), trust=trust)
    steal(tmp_path / "pole", tmp_path / "thief")
    with TrustList(db) as city:
        assert city.revoke(kid=pole.kid.hex(), compromised=True) == 1
    thief, announcement = thief_rotates(tmp_path / "thief")
    verifier.check(TOPIC + "rotate", announcement)  # its list still says the key is active
    rec = {r.kid: r for r in trust.records()}[thief.kid]
    assert rec.status == "revoked" and rec.rotated_from == pole.kid.hex()
    v = verifier.check(TOPIC + "data", data(thief.seed, 1, boot=50))
    assert v.status == "rejected" and "revoked" in v.reason, v
    verifier.set_keys(load_keys(db))
    assert verifier.check(TOPIC + "data", data(thief.seed, 2, boot=50)).status == "rejected"
    # The same announcement again (a verifier started afresh) adds nothing either.
    fresh = Verifier({pole.kid: load_keys(db)[pole.kid]}, trust=trust)
    fresh.keys[pole.kid].status = "active"  # as stale as it gets
    fresh.check(TOPIC + "rotate", announcement)
    assert fresh.keys[thief.kid].status == "revoked"
    trust.close()

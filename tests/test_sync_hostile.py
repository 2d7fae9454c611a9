"""Issue 13, items 1, 3 and 7 for offline registrations: whatever lands in the folder that
``pole-admin trust sync`` reads, every bad file is refused with a reason of its class,
nothing crashes or hangs, nothing is half-applied, and the honest registration beside
them is still synced.

The corpus: the strict decoder's classes (value sharing, regular expressions, deep
nesting, huge declared lengths, duplicate keys, indefinite items, non-minimal heads,
trailing bytes) in the envelope, the protected header and the signed payload; a wrong
type for every field; odd pole ids; broker users naming another account; a replayed
older registration after a newer password reset; a revoked key; and files that are not
files (symbolic links, a FIFO, a directory, a socket, a device) or too large.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from pathlib import Path

import cbor2
import pytest
from nacl.bindings import crypto_sign, crypto_sign_seed_keypair

from edge import cbor
from edge.console import registration_proof_message
from provisioning.broker_auth import BrokerAuth, password_hash
from provisioning.registration import (
    MAX_SIZE,
    RegistrationError,
    TechnicianKey,
    make_registration,
    read_registration,
    registration_path,
)
from provisioning.sync import shown, sync_registrations
from provisioning.trustlist import TrustList

TECH = "j-devries"
POLE = "nl-sync-0001"
READER = "city-verifier"


class PoleKey:
    """A controller's key, as the console would use it for the proof of possession."""

    def __init__(self) -> None:
        self.public_key, self._sk = crypto_sign_seed_keypair(os.urandom(32))

    def fields(self, pole_id: str = POLE, password: str = "pole password 0123456789") -> dict:
        nonce = os.urandom(16)
        msg = registration_proof_message(pole_id, self.public_key, nonce)
        return {
            "pole_id": pole_id,
            "public_key": self.public_key,
            "nonce": nonce,
            "proof": crypto_sign(msg, self._sk)[:64],
            "lat": 51.4416,
            "lon": 5.4697,
            "board": "sim-pole-full",
            "broker_user": pole_id,
            "broker_hash": password_hash(password),
            "replaces": False,
        }


class Office:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tech = TechnicianKey.create(root / "tech", TECH)
        self.trust = TrustList(root / "trust.sqlite")
        self.trust.add_technician(TECH, self.tech.public_key)
        self.auth = BrokerAuth(root / "auth")
        self.reader_pw = self.auth.add(READER, reader=True)
        self.regs = root / "regs"
        self.regs.mkdir()

    def body(self, key: PoleKey, recorded: int | None = None, **over) -> dict:
        b = {"type": "lightpole-registration", "v": 1, **key.fields(), "technician": TECH}
        b["recorded"] = int(time.time()) if recorded is None else recorded
        b.update(over)
        return b

    def signed(self, body) -> bytes:
        """Any payload (a dict, a Map with duplicate keys, raw bytes), technician-signed."""
        return self.tech.sign(body if isinstance(body, bytes) else cbor.dumps(body))

    def check(self, data: bytes) -> tuple[dict, str]:
        return read_registration(data, self.trust.technician)

    def sync(self, *paths: Path, broker: bool = True) -> dict[str, tuple[bool, str]]:
        """sync_registrations in a thread (with its own trust-list connection, as SQLite
        wants): a FIFO or a device must never make it hang."""
        out: list = []

        def run() -> None:
            trust = TrustList(self.root / "trust.sqlite")
            try:
                out.append(
                    sync_registrations(
                        list(paths or [self.regs]), trust, self.auth.dir if broker else None
                    )
                )
            except BaseException as exc:  # re-raised below, in the test's thread
                out.append(exc)
            finally:
                trust.close()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(60)
        assert not t.is_alive(), "trust sync hung"
        if isinstance(out[0], BaseException):
            raise out[0]
        return {p.name: (ok, msg) for p, ok, msg in out[0]}

    def close(self) -> None:
        self.trust.close()


@pytest.fixture
def office(tmp_path):
    o = Office(tmp_path)
    yield o
    o.close()


def _honest_parts(office: Office) -> tuple[bytes, bytes, bytes]:
    """(protected, payload, signature) of an honest registration, to rebuild by hand."""
    data = make_registration(office.tech, PoleKey().fields())
    protected, _, payload, sig = cbor2.loads(data).value
    return protected, payload, sig


def _bstr(b: bytes) -> bytes:
    return cbor.encode_bytes(b)


def envelope_corpus(office: Office) -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, the reason's class) for damaged envelopes and headers."""
    protected, payload, sig = _honest_parts(office)
    parts = _bstr(protected) + b"\xa0" + _bstr(payload) + _bstr(sig)
    honest = b"\xd2\x84" + parts
    assert office.check(honest)  # the hand-built envelope is sound before we damage it
    big = b"\xff" * 8
    return {
        "empty": (b"", "an empty file"),
        "garbage": (os.urandom(300), "not a well-formed registration"),
        "json": (b'{"pole_id": "nl-sync-0001"}', "not a well-formed registration"),
        "value-sharing": (b"\xd2\xd8\x1c\x84" + parts, "tag 28"),
        "value-sharing-dag": (b"\x82\xd8\x1c\x81\x00\xd8\x1d\x00", "tag 28"),
        "shared-ref": (b"\xd2\x84" + _bstr(protected) + b"\xd8\x1d\x00" + parts[-70:], "tag 29"),
        "regex": (b"\xd2\xd8\x23\x68(a+)+b\\1", "tag 35"),
        "regex-in-header": (b"\xd2\x84\xd8\x23\x61a" + parts[len(_bstr(protected)) :], "tag 35"),
        "datetime-tag": (b"\xc1\x1a\x65\x00\x00\x00", "tag 1"),
        "cose-sign-tag": (b"\xd8\x62\x84" + parts, "tag 98"),
        "huge-tag-number": (b"\xdb" + big + b"\x00", "is not allowed here"),
        "deep-nesting": (b"\xd2" + b"\x81" * 60000 + b"\x00", "nested deeper than"),
        "huge-bstr": (b"\xd2\x84\x5b" + big, "exceeds the message"),
        "huge-array": (b"\xd2\x9b" + big, "exceeds the message"),
        "huge-map": (b"\xd2\x84" + _bstr(protected) + b"\xbb" + big, "exceeds the message"),
        "huge-text": (b"\xd2\x84\x7b" + big, "exceeds the message"),
        "indefinite-array": (b"\xd2\x9f" + parts + b"\xff", "indefinite length"),
        "indefinite-bstr": (b"\xd2\x84\x5f\x41\x00\xff" + parts[-70:], "indefinite length"),
        "non-minimal-array": (b"\xd2\x98\x04" + parts, "non-minimal head"),
        "non-minimal-tag": (b"\xd8\x12\x84" + parts, "non-minimal head"),
        "non-minimal-length": (
            b"\xd2\x84\x58" + bytes([len(protected)]) + protected + parts[len(protected) + 1 :],
            "non-minimal head",
        ),
        "trailing": (honest + b"\x00", "trailing bytes"),
        "two-items": (honest + honest, "trailing bytes"),
        "bad-utf8": (b"\xd2\x84\x62\xff\xfe" + parts[len(_bstr(protected)) :], "UTF-8"),
        "undefined": (b"\xd2\xf7", "simple value"),
        "untagged": (b"\x84" + parts, "not a COSE_Sign1 message"),
        "three-parts": (b"\xd2\x83" + _bstr(protected) + b"\xa0" + _bstr(payload), "4 parts"),
        "unprotected-header": (
            b"\xd2\x84" + _bstr(protected) + b"\xa1\x04\x41\x00" + _bstr(payload) + _bstr(sig),
            "malformed COSE_Sign1",
        ),
        "short-signature": (
            b"\xd2\x84" + _bstr(protected) + b"\xa0" + _bstr(payload) + _bstr(sig[:63]),
            "malformed COSE_Sign1",
        ),
        "header-duplicate-key": (
            b"\xd2\x84" + _bstr(b"\xa2\x01\x27\x01\x27") + parts[len(_bstr(protected)) :],
            "duplicate",
        ),
        "header-crit": (
            b"\xd2\x84"
            + _bstr(cbor.dumps({1: -8, 4: office.tech.kid, 2: [99]}))
            + parts[len(_bstr(protected)) :],
            "protected header",
        ),
        "header-alg-float": (
            b"\xd2\x84"
            + _bstr(cbor.dumps({1: -8.0, 4: office.tech.kid}))
            + parts[len(_bstr(protected)) :],
            "unexpected algorithm",
        ),
        "header-no-kid": (
            b"\xd2\x84" + _bstr(cbor.dumps({1: -8})) + parts[len(_bstr(protected)) :],
            "no key id",
        ),
        "unknown-kid": (
            b"\xd2\x84"
            + _bstr(cbor.dumps({1: -8, 4: b"\x00" * 8}))
            + parts[len(_bstr(protected)) :],
            "unknown technician key",
        ),
        "altered-payload": (
            b"\xd2\x84"
            + _bstr(protected)
            + b"\xa0"
            + _bstr(payload.replace(b"sim-pole-full", b"sim-pole-fool"))
            + _bstr(sig),
            "technician signature does not verify",
        ),
    }


def payload_corpus(office: Office) -> dict[str, tuple[bytes, str]]:
    """Technician-signed payloads that break the strict decoder: the signature holds,
    the payload is still refused."""
    honest = cbor.dumps(office.body(PoleKey()))
    items = len(office.body(PoleKey()))
    rest = honest[1:]  # the pairs without the map head (fewer than 24 pairs)
    return {
        "payload-value-sharing": (office.signed(b"\xd8\x1c" + honest), "tag 28"),
        "payload-regex": (office.signed(b"\xd8\x23\x62.*"), "tag 35"),
        "payload-cose-tag": (office.signed(b"\xd2" + honest), "tag 18"),
        "payload-deep": (office.signed(b"\x81" * 1000 + b"\x00"), "nested deeper than"),
        "payload-nested-field": (
            office.signed(cbor.dumps(office.body(PoleKey(), pole_id=["nl-sync-0001"]))),
            "nested deeper than",
        ),
        "payload-huge-length": (office.signed(b"\xbb" + b"\xff" * 8), "exceeds the message"),
        "payload-duplicate-key": (
            office.signed(
                cbor.dumps(
                    cbor.Map(list(office.body(PoleKey()).items()) + [("pole_id", "nl-sync-0002")])
                )
            ),
            "duplicate",
        ),
        "payload-indefinite-map": (office.signed(b"\xbf" + rest + b"\xff"), "indefinite length"),
        "payload-non-minimal": (
            office.signed(b"\xb8" + bytes([items]) + rest),
            "non-minimal head",
        ),
        "payload-trailing": (office.signed(honest + b"\xf6"), "trailing bytes"),
        "payload-not-a-map": (office.signed(cbor.dumps(["lightpole-registration"])), "version-1"),
    }


ODD_IDS = ["a/b", "+", "#", "..", "a b", "nl-1\n", "x" * 64, "", 5, b"nl-1", None, True, 1.5]


def field_corpus(office: Office) -> dict[str, tuple[bytes, str]]:
    """A wrong value of a wrong type for every field, each signed by the technician."""
    cases: dict[str, tuple[object, str]] = {
        "type": (1, "version-1"),
        "v": (True, "version-1"),
        "v-float": (1.0, "version-1"),
        "v-two": (2, "version-1"),
        "technician": (5, "technician name does not match"),
        "technician-other": ("mallory", "technician name does not match"),
        "public_key": ("00" * 32, "field public_key must be 32 bytes"),
        "public_key-short": (b"\x01" * 31, "field public_key must be 32 bytes"),
        "nonce": ("nonce", "field nonce must be 16 to 64 bytes"),
        "nonce-short": (b"\x00" * 8, "field nonce must be 16 to 64 bytes"),
        "nonce-long": (b"\x00" * 65, "field nonce must be 16 to 64 bytes"),
        "proof": (b"\x00" * 63, "field proof must be 64 bytes"),
        "proof-text": ("proof", "field proof must be 64 bytes"),
        "recorded": (True, "field recorded must be a positive whole number"),
        "recorded-float": (1.7e9, "field recorded must be a positive whole number"),
        "recorded-text": ("2026-11-29", "field recorded must be a positive whole number"),
        "recorded-negative": (-1, "field recorded must be a positive whole number"),
        "recorded-future": (int(time.time()) + 3 * 86400, "in the future"),
        "recorded-huge": (2**64 - 1, "in the future"),
        "lat": ("51.4", "field lat must be a number"),
        "lat-bool": (True, "field lat must be a number"),
        "lat-nan": (float("nan"), "field lat must be a number"),
        "lat-range": (91.0, "field lat must be a number from -90 to 90"),
        "lon": (float("inf"), "field lon must be a number from -180 to 180"),
        "board": ("../boards/x", "board"),
        "board-int": (7, "board 7 is not valid"),
        "broker_user": ("nl-sync-0002", "is not the pole id"),
        "broker_user-reader": (READER, "is not the pole id"),
        "broker_user-wildcard": ("#", "is not the pole id"),
        "broker_user-int": (7, "is not the pole id"),
        "broker_hash": ("plain password", "field broker_hash: not a Mosquitto"),
        "broker_hash-injected": (
            password_hash("x") + f"\n{READER}:" + password_hash("y"),
            "field broker_hash: not a Mosquitto",
        ),
        "broker_hash-slow": (
            password_hash("x").replace("$7$101$", "$7$999999$"),
            "field broker_hash: not a Mosquitto",
        ),
        "broker_hash-bytes": (b"$7$", "field broker_hash: not a Mosquitto"),
        "replaces": (1, "field replaces must be true or false"),
        "replaces-text": ("yes", "field replaces must be true or false"),
    }
    out = {}
    for name, (value, reason) in cases.items():
        field = name.split("-")[0]
        out["field-" + name] = (office.signed(office.body(PoleKey(), **{field: value})), reason)
    for i, pid in enumerate(ODD_IDS):
        body = office.body(PoleKey(), pole_id=pid)
        out[f"pole-id-{i}"] = (office.signed(body), "pole id")
    for missing in ("pole_id", "public_key", "nonce", "proof", "technician", "recorded"):
        body = office.body(PoleKey())
        del body[missing]
        out["missing-" + missing] = (office.signed(body), "missing" if missing != "technician"
                                     else "technician name")  # fmt: skip
    extra = office.body(PoleKey())
    extra["admin"] = True
    out["unknown-field"] = (office.signed(extra), 'unexpected field "admin"')
    extra = office.body(PoleKey())
    extra[1] = "x"
    out["integer-key"] = (office.signed(extra), "unexpected field 1")
    wrong_proof = office.body(PoleKey())
    wrong_proof["proof"] = bytes(64)
    out["wrong-proof"] = (office.signed(wrong_proof), "proof of possession does not verify")
    return out


def _corpus(office: Office) -> dict[str, tuple[bytes, str]]:
    return envelope_corpus(office) | payload_corpus(office) | field_corpus(office)


def _sane(msg: str) -> bool:
    """A reason is bounded and printable: no attacker bytes were formatted into it."""
    return len(msg) < 400 and msg.isprintable()


def test_every_hostile_registration_is_refused_for_its_class(office):
    corpus = _corpus(office)
    assert len(corpus) > 90
    for name, (data, reason) in corpus.items():
        assert len(data) <= MAX_SIZE, name
        with pytest.raises(RegistrationError) as err:
            office.check(data)
        msg = str(err.value)
        assert reason in msg, (name, msg)
        assert _sane(msg), (name, msg)


def test_a_hostile_folder_changes_nothing_and_the_honest_file_is_synced(office, tmp_path):
    corpus = _corpus(office)
    for name, (data, _) in corpus.items():
        (office.regs / f"{name}.lpreg").write_bytes(data)
    key = PoleKey()
    honest = make_registration(office.tech, key.fields())
    good = registration_path(office.regs, POLE, key.public_key)
    good.write_bytes(honest)
    # Files that are not registration files at all.
    (office.regs / "link-to-honest.lpreg").symlink_to(good.name)
    (office.regs / "link-to-passwd.lpreg").symlink_to("/etc/passwd")
    (office.regs / "dangling.lpreg").symlink_to(tmp_path / "nothing-here")
    os.mkfifo(office.regs / "fifo.lpreg")
    (office.regs / "dir.lpreg").mkdir()
    (office.regs / "oversized.lpreg").write_bytes(honest + b"\x00" * MAX_SIZE)
    odd_name = os.fsdecode(b"\x1b[31m\xff odd.lpreg")
    (office.regs / odd_name).write_bytes(b"\x00")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(office.regs / "socket.lpreg"))
    device = office.regs / "null.lpreg"
    try:
        os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except (PermissionError, OSError):
        device = None  # no CAP_MKNOD here: the other non-files still stand for it
    try:
        results = office.sync()
    finally:
        sock.close()
    expect = {f"{n}.lpreg": r for n, (_, r) in corpus.items()} | {
        "link-to-honest.lpreg": "a symbolic link",
        "link-to-passwd.lpreg": "a symbolic link",
        "dangling.lpreg": "a symbolic link",
        "fifo.lpreg": "a FIFO",
        "dir.lpreg": "a directory",
        "oversized.lpreg": "too large for a registration",
        "socket.lpreg": "a socket",
        odd_name: "not a COSE_Sign1 message",
    }
    if device is not None:
        expect["null.lpreg"] = "a character device"
    assert set(results) == set(expect) | {good.name}
    for name, reason in expect.items():
        ok, msg = results[name]
        assert not ok and reason in msg, (name, msg)
        assert _sane(msg) and "internal error" not in msg, (name, msg)
    ok, msg = results[good.name]
    assert ok and msg.startswith(f"{POLE} kid ") and "broker password installed" in msg, msg
    # Nothing else reached the trust list or the broker; refused files stay in place.
    assert [(r.pole_id, r.public_key) for r in office.trust.records()] == [(POLE, key.public_key)]
    assert office.auth.users() == sorted([POLE, READER])
    assert office.auth.check(READER, office.reader_pw)
    assert (office.regs / "synced" / good.name).exists() and not good.exists()
    assert (office.regs / "fifo.lpreg").exists() and Path("/etc/passwd").exists()
    assert shown(office.regs / odd_name).isprintable()
    assert shown(office.regs / odd_name).isascii()


def test_a_replayed_older_registration_never_undoes_a_password_reset(office):
    key = PoleKey()
    old = office.signed(office.body(key, recorded=int(time.time()) - 3600))
    (office.regs / "first.lpreg").write_bytes(old)
    assert office.sync()["first.lpreg"][0]
    old_hash_set = office.auth.password_set_at(POLE)
    # The city resets the pole's password online (pole-admin broker add / provision).
    new_pw = office.auth.add(POLE)
    assert office.auth.password_set_at(POLE) > old_hash_set
    # Someone drops the old file again, under another name: refused, nothing changes.
    (office.regs / "replay.lpreg").write_bytes(old)
    before = office.auth.passwd.read_bytes()
    ok, msg = office.sync()["replay.lpreg"]
    assert not ok and "an older registration never replaces it" in msg, msg
    assert office.auth.passwd.read_bytes() == before and office.auth.check(POLE, new_pw)
    # Syncing the synced folder again is still harmless (the same hash, no change) ...
    synced = office.sync(office.regs / "synced")
    assert not synced["first.lpreg"][0] and "older registration" in synced["first.lpreg"][1]
    # ... and a newer registration for the same key does replace the password.
    newer = office.body(key, recorded=int(time.time()) + 60)
    newer["broker_hash"] = password_hash("the newest password of all")
    (office.regs / "newer.lpreg").write_bytes(office.signed(newer))
    ok, msg = office.sync()["newer.lpreg"]
    assert ok and "broker password installed" in msg, msg
    assert office.auth.check(POLE, "the newest password of all")
    # A removal counts as a reset too: the old file cannot bring the account back.
    office.auth.remove(POLE)
    (office.regs / "after-removal.lpreg").write_bytes(office.signed(newer))
    ok, msg = office.sync()["after-removal.lpreg"]
    assert not ok and "was removed" in msg and not office.auth.has_user(POLE), msg


def test_the_same_registration_twice_is_harmless(office):
    key = PoleKey()
    data = office.signed(office.body(key))
    (office.regs / "a.lpreg").write_bytes(data)
    assert "broker password installed" in office.sync()["a.lpreg"][1]
    ok, msg = office.sync(office.regs / "synced")["a.lpreg"]
    assert ok and "broker password already installed" in msg, msg


def test_a_revoked_key_is_never_registered_again(office):
    key = PoleKey()
    (office.regs / "a.lpreg").write_bytes(office.signed(office.body(key)))
    assert office.sync()["a.lpreg"][0]
    office.trust.revoke(pole_id=POLE)
    before = office.auth.passwd.read_bytes()
    later = office.body(key, recorded=int(time.time()) + 60, replaces=True)
    (office.regs / "b.lpreg").write_bytes(office.signed(later))
    ok, msg = office.sync()["b.lpreg"]
    assert not ok and "was revoked" in msg, msg
    assert office.auth.passwd.read_bytes() == before
    assert office.trust.active_keys(POLE) == []


def test_refusals_that_need_the_city_state_change_nothing(office):
    """A reader's name as a pole id, a key of another pole, a second key without
    'replaces': each refused before the trust list or the broker changes."""
    spy = PoleKey()
    body = office.body(spy)
    body.update(spy.fields(pole_id=READER))
    (office.regs / "reader.lpreg").write_bytes(office.signed(body))
    first = PoleKey()
    (office.regs / "first.lpreg").write_bytes(office.signed(office.body(first)))
    results = office.sync()
    assert not results["reader.lpreg"][0] and "reader accounts" in results["reader.lpreg"][1]
    assert results["first.lpreg"][0]
    second = office.body(PoleKey())
    (office.regs / "second.lpreg").write_bytes(office.signed(second))
    stolen = office.body(first)
    stolen.update(first.fields(pole_id="nl-sync-0002"))
    (office.regs / "stolen.lpreg").write_bytes(office.signed(stolen))
    before = (office.auth.passwd.read_bytes(), len(office.trust.records()))
    results = office.sync()
    assert "already has another active key" in results["second.lpreg"][1]
    assert "already registered for pole nl-sync-0001" in results["stolen.lpreg"][1]
    assert (office.auth.passwd.read_bytes(), len(office.trust.records())) == before
    assert office.auth.check(READER, office.reader_pw)


def test_without_broker_dir_only_the_trust_list_changes(office):
    key = PoleKey()
    (office.regs / "a.lpreg").write_bytes(office.signed(office.body(key)))
    ok, msg = office.sync(broker=False)["a.lpreg"]
    assert ok and "broker" not in msg and not office.auth.has_user(POLE)


def test_the_technician_key_is_never_read_through_a_link(office, tmp_path):
    link = tmp_path / "elsewhere"
    link.mkdir()
    (link / "technician.key").symlink_to(office.root / "tech" / "technician.key")
    (link / "technician.json").write_text('{"technician": "j-devries"}')
    with pytest.raises(PermissionError, match="not a symbolic link"):
        TechnicianKey.load(link)
    assert TechnicianKey.load(office.root / "tech").public_key == office.tech.public_key

"""Files pole-admin writes, and the names that become them (issue 13, items 2 and 7).

Every file has its declared mode whatever the umask: the commands run in this process
under umask 0o000 (a careless service unit: files would be world-writable) and 0o077
(a strict one: a label or export nobody else can read); the modes must be the same, and
the declared ones, under both. And every name pole-admin takes from outside (a pole id,
a broker user, a technician, an operator, a board) follows the one rule of edge.names
before anything is written: names become file names, topics and passwd lines.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edge.names import ID_RULE, InvalidName
from host_sim.broker import free_port
from provisioning.broker_auth import BrokerAuth
from provisioning.cli import main as admin
from provisioning.commission import Commissioning
from provisioning.console_client import ProvisionError
from provisioning.label import write_label
from provisioning.operator import OperatorKey
from provisioning.provision import Plan, Provisioner
from provisioning.registration import TechnicianKey
from provisioning.trustlist import TrustError, TrustList

PUBLIC, PRIVATE = 0o644, 0o600
EXPECTED = {
    "pole/identity.key": PRIVATE,
    "pole/identity.json": PUBLIC,
    "trust.sqlite": PUBLIC,
    "trust.json": PUBLIC,
    "labels/nl-ex-0001.png": PUBLIC,
    "labels/nl-ex-0001.svg": PUBLIC,
    "statedir-labels/nl-ex-0001.png": PUBLIC,
    "statedir-labels/nl-ex-0001.svg": PUBLIC,
    "tech/technician.key": PRIVATE,
    "tech/technician.json": PUBLIC,
    "operator/operator.key": PRIVATE,
    "operator/operator.json": PUBLIC,
    "wipe.auth": PRIVATE,
    "auth/passwd": PRIVATE,
    "auth/acl": PRIVATE,
    "auth/accounts.json": PRIVATE,
    "reader.password": PRIVATE,
    "reports/commission-*.txt": PUBLIC,
    "reports/commission-*.json": PUBLIC,
    "direct/commission-*.txt": PUBLIC,
    "direct/commission-*.json": PUBLIC,
    "direct-labels/nl-ex-0002.png": PUBLIC,
    "direct-labels/nl-ex-0002.svg": PUBLIC,
}


def run(*argv: str) -> None:
    rc = admin(list(argv))
    assert rc in (0, 1), (argv, rc)  # commission without a broker fails, and saves its report


def everything(w: Path) -> None:
    """Each command of pole-admin that writes a file, as the docs use it."""
    db, pole = str(w / "trust.sqlite"), str(w / "pole")
    run("identity", "create", "--state-dir", pole, "--pole-id", "nl-ex-0001")
    run("trust", "add", "--db", db, "--state-dir", pole)
    run("trust", "export", "--db", db, "--out", str(w / "trust.json"))
    run("label", "--pole-id", "nl-ex-0001", "--fingerprint", "ab12:cd34", "--lat", "51.44",
        "--lon", "5.47", "--out-dir", str(w / "labels"))  # fmt: skip
    run("label", "--state-dir", pole, "--lat", "51.44", "--lon", "5.47",
        "--out-dir", str(w / "statedir-labels"))  # fmt: skip
    run("technician", "create", "--name", "j-devries", "--dir", str(w / "tech"))
    run("operator", "create", "--name", "city-ops", "--dir", str(w / "operator"))
    run("operator", "authorise", "nl-ex-0001", "WIPE", "--challenge", "00" * 16,
        "--operator-key", str(w / "operator"), "--out", str(w / "wipe.auth"))  # fmt: skip
    run("broker", "add", "--dir", str(w / "auth"), "--user", "city-reader", "--reader",
        "--password-out", str(w / "reader.password"))  # fmt: skip
    run("commission", "nl-ex-0001", "--broker", f"mqtt://127.0.0.1:{free_port()}",
        "--trust", db, "--timeout", "5", "--out-dir", str(w / "reports"))  # fmt: skip
    # The same writers called directly, as provisioning (step 7) and tools do.
    Commissioning("nl-ex-0001").save(w / "direct")
    write_label(w / "direct-labels", "nl-ex-0002", "ab12:cd34", 51.44, 5.47)


def modes(w: Path) -> dict[str, int]:
    out = {}
    for pattern in EXPECTED:
        found = sorted(w.glob(pattern))
        assert found, pattern
        for p in found:
            out[pattern] = stat.S_IMODE(p.lstat().st_mode)
    for extra in w.glob("trust.sqlite-*"):  # SQLite's -wal and -shm, if still there
        out[extra.name] = stat.S_IMODE(extra.lstat().st_mode)
    return out


@pytest.mark.parametrize("umask", [0o000, 0o077], ids=["umask000", "umask077"])
def test_every_file_has_its_mode_whatever_the_umask(tmp_path, capsys, umask):
    before = os.umask(umask)
    try:
        everything(tmp_path)
    finally:
        os.umask(before)
    capsys.readouterr()
    got = modes(tmp_path)
    want = dict(EXPECTED)
    want.update({k: PUBLIC for k in got if k.startswith("trust.sqlite-")})
    assert {k: oct(v) for k, v in got.items()} == {k: oct(v) for k, v in want.items()}


def test_labels_and_reports_are_not_written_through_a_symbolic_link(tmp_path):
    """A link planted where a label goes is replaced, not followed."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "nl-ex-0001.svg").symlink_to(victim)
    write_label(tmp_path / "labels", "nl-ex-0001", "ab12:cd34", 51.44, 5.47)
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "labels" / "nl-ex-0001.svg").is_symlink()


@pytest.mark.parametrize("pole_id", ["../escape", "nl/1", "nl-1\n", ".", ""])
def test_a_label_is_named_only_by_a_valid_pole_id(tmp_path, pole_id):
    with pytest.raises(ValueError, match="pole id"):
        write_label(tmp_path / "labels", pole_id, "ab12:cd34", 51.44, 5.47)
    assert not (tmp_path / "labels").exists() or not any((tmp_path / "labels").iterdir())


# -- names ---------------------------------------------------------------------------------------
PK = "11" * 32
PROVISION = ["--port", "/dev/null", "--lat", "51", "--lon", "5", "--broker-url", "mqtt://h:1"]
BAD_NAMES = [
    ["technician", "create", "--name", "j.devries"],
    ["trust", "add-technician", "--db", "t.sqlite", "--name", "j devries", "--public-key", PK],
    ["trust", "revoke-technician", "--db", "t.sqlite", "--name", "j/devries"],
    ["operator", "create", "--name", "ops:1"],
    ["operator", "authorise", "nl+1", "WIPE", "--challenge", "00" * 16],
    ["trust", "add-operator", "ops\n1", "--db", "t.sqlite", "--public-key", PK],
    ["trust", "revoke-operator", "ops#1", "--db", "t.sqlite"],
    ["trust", "add", "--db", "t.sqlite", "--pole-id", "nl-1\n", "--public-key", PK],
    ["trust", "revoke", "--db", "t.sqlite", "--pole-id", "nl/#"],
    ["identity", "create", "--state-dir", "s", "--pole-id", "../nl"],
    ["provision", "--pole-id", "nl.1", *PROVISION],
    ["provision", "--pole-id", "nl-1", "--board", "../../etc/x", *PROVISION],
    ["replace-controller", "nl 1", *PROVISION],
    ["decommission", "nl_1", "--trust-db", "t.sqlite"],
    ["commission", "nl-1:", "--broker", "mqtt://h:1", "--trust", "t.json"],
    ["commission", "nl-1", "--broker", "mqtt://h:1", "--trust", "t.json", "--username", "a+b"],
    ["label", "--pole-id", "..", "--fingerprint", "ab", "--lat", "1", "--lon", "1"],
    ["broker", "add", "--dir", "a", "--user", "a:b", "--password-out", "p"],
    ["broker", "remove", "--dir", "a", "--user", "#"],
    ["broker", "add", "--dir", "a", "--user", "nl-1", "--password-out", "p", "--prefix", "p/#"],
    ["verify", "--broker", "mqtt://h:1", "--trust", "t.json", "--username", "x y"],
    ["audit", "--board", "../sim-pole"],
]


@pytest.mark.parametrize("argv", BAD_NAMES, ids=lambda a: "-".join(a[:2]))
def test_every_name_on_the_command_line_follows_the_rule(tmp_path, capsys, argv, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        admin(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "is not valid: use " + ID_RULE in err, err
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_technician_and_operator_names_follow_the_rule_everywhere(tmp_path):
    with pytest.raises(InvalidName):
        TechnicianKey.create(tmp_path / "tech", "j.devries")
    assert not (tmp_path / "tech").exists()
    with pytest.raises(InvalidName):
        TechnicianKey("j devries", b"\x01" * 32)
    with pytest.raises(InvalidName):
        OperatorKey("ops/1", b"\x01" * 32)
    with TrustList(tmp_path / "trust.sqlite") as tl:
        with pytest.raises(TrustError, match="technician"):
            tl.add_technician("j.devries", bytes(32))
        with pytest.raises(TrustError, match="operator"):
            tl.add_operator("ops 1", bytes(32))
        kid = tl.add_technician("j-devries", b"\x02" * 32)
        assert tl.add_technician("j-devries", b"\x02" * 32) == kid  # idempotent
        with pytest.raises(TrustError, match="already enrolled as j-devries"):
            tl.add_technician("p-jansen", b"\x02" * 32)
        # A name enrolled before the rule existed can still be revoked, by its kid.
        tl.db.execute(
            "INSERT INTO technicians VALUES ('00112233aabbccdd', 'old.name', ?, 'active', 0)",
            ("33" * 32,),
        )
        tl.db.commit()
    rc = admin(["trust", "revoke-technician", "--db", str(tmp_path / "trust.sqlite"),
                "--kid", "00112233AABBCCDD"])  # fmt: skip
    assert rc == 0
    with TrustList(tmp_path / "trust.sqlite") as tl:
        assert ("old.name", "00112233aabbccdd", "revoked") in tl.technicians()


def test_a_technician_key_with_a_name_against_the_rule_says_what_to_do(tmp_path):
    key = TechnicianKey.create(tmp_path / "tech", "j-devries")
    rec = (tmp_path / "tech" / "technician.json").read_text()
    (tmp_path / "tech" / "technician.json").write_text(rec.replace("j-devries", "j.devries"))
    with pytest.raises(ValueError, match="pole-admin technician create"):
        TechnicianKey.load(tmp_path / "tech")
    assert key.name == "j-devries"


class _Console:
    port = "/dev/ttyUSB0"


def _plan(tmp_path: Path, pole_id: str) -> Plan:
    return Plan(
        pole_id=pole_id,
        lat=51.44,
        lon=5.47,
        board="sim-pole",
        broker_url="mqtt://127.0.0.1:1",
        label_dir=tmp_path / "labels",
        trust_db=tmp_path / "trust.sqlite",
        broker_dir=tmp_path / "auth",
    )


def test_provisioning_refuses_a_pole_id_that_is_a_reader_account(tmp_path):
    """A pole's broker user is its pole id: provisioning 'pole' city-reader would hand the
    reader's account to the controller. Refused in the preflight, before anything changes
    at the city."""
    auth = BrokerAuth(tmp_path / "auth")
    auth.add("city-reader", reader=True)
    passwd = auth.passwd.read_bytes()
    TrustList(tmp_path / "trust.sqlite").close()
    prov = Provisioner(_Console(), _plan(tmp_path, "city-reader"), say=lambda m: None)  # type: ignore[arg-type]
    prov.public = b"\x05" * 32
    with pytest.raises(ProvisionError) as exc:
        prov.preflight()
    assert exc.value.message == "city-reader is one of the city's reader accounts"
    assert exc.value.next_step == "check the pole number"
    assert auth.passwd.read_bytes() == passwd and auth.role("city-reader") == "reader"
    with TrustList(tmp_path / "trust.sqlite") as tl:
        assert tl.records() == []
    # A pole id that is no reader passes the same preflight.
    ok = Provisioner(_Console(), _plan(tmp_path, "nl-ex-0001"), say=lambda m: None)  # type: ignore[arg-type]
    ok.public = b"\x05" * 32
    ok.preflight()


@pytest.mark.parametrize("pole_id", ["nl/#", "nl-1\n", 7, None])
def test_an_exported_trust_list_naming_an_odd_pole_is_refused(tmp_path, pole_id):
    """Verifiers read trust.json from wherever it was distributed: its pole ids follow
    the rule too (a verifier keeps its old list when a reload is refused)."""
    import json

    from provisioning.trustlist import load_keys

    doc = {
        "format": "lightpole-trust-list",
        "version": 1,
        "keys": [{"pole_id": pole_id, "public_key": "11" * 32, "status": "active"}],
    }
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(TrustError, match="pole id") as exc:
        load_keys(path)
    assert "\n" not in str(exc.value)

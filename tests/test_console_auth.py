"""Issue 13, item 4: a cable at the pole is not an authorisation.

The real ``pole-console`` process answers on a real pty; the laptop's side is a second
pty joined to it by a relay (a null-modem cable), so ``pole-admin`` opens a device path
exactly as it would open /dev/ttyUSB0. A finished pole refuses CONFIGURE, CREDENTIALS,
OPERATORS and WIPE without a one-time authorisation signed by a city operator key it
holds, and accepts them with one; tokens by the wrong role, for another pole, command
or challenge, stale, expired or altered are refused. Fuzzed frames never crash it.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import stat
import subprocess
import sys
import termios
import threading
import time
import tomllib
import tty
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.console import REQUEST, RESPONSE, ConsoleAgent, crc, frame, unframe
from edge.console_args import CONFIGURE_KEYS
from edge.console_auth import OPERATORS_FILE, auth_payload
from edge.state import create_identity, load_identity
from provisioning.broker_auth import BrokerAuth
from provisioning.console_client import ConsoleClient, ConsoleRefused
from provisioning.operator import OperatorKey
from provisioning.registration import TechnicianKey, make_registration
from provisioning.trustlist import TrustError, TrustList

BIN = Path(sys.executable).parent
POLE = "nl-test-00007"


# -- the real parts --------------------------------------------------------------------------
def _write_all(fd: int, data: bytes, timeout_s: float = 2.0) -> None:
    while data:
        _, w, _ = select.select([], [fd], [], timeout_s)
        if not w:
            return  # nobody reads: a cable drops bytes too
        try:
            data = data[os.write(fd, data) :]
        except OSError:
            return


class PoleConsole:
    """``pole-console`` (the installed script) on a pty; ``port`` is the laptop's end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state_dir = root / "var" / "lib" / "lightpole"
        self.config = root / "etc" / "lightpole" / "pole.toml"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log = root / "console.log"
        self._m1, self._s1 = os.openpty()  # the controller's console
        self._m2, self._s2 = os.openpty()  # the laptop's USB-serial adapter
        for fd in (self._s1, self._s2):
            tty.setraw(fd)
        self.port = os.ttyname(self._s2)
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._relay = threading.Thread(target=self._run_relay, daemon=True)
        self._relay.start()

    def start(self, *extra: str) -> PoleConsole:
        self.proc = subprocess.Popen(
            [str(BIN / "pole-console"), "--port", os.ttyname(self._s1),
             "--config", str(self.config), "--state-dir", str(self.state_dir),
             "--log-level", "INFO", *extra],
            stdout=subprocess.DEVNULL, stderr=self.log.open("ab"),
        )  # fmt: skip
        with Line(self.port) as line:  # up and answering
            line.hello(timeout_s=30)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def close(self) -> None:
        self.stop()
        self._stop.set()
        self._relay.join(2)
        for fd in (self._m1, self._s1, self._m2, self._s2):
            os.close(fd)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _run_relay(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._m1, self._m2], [], [], 0.1)
            for src in ready:
                try:
                    data = os.read(src, 4096)
                except OSError:
                    continue
                _write_all(self._m2 if src == self._m1 else self._m1, data)


class Line:
    """The test's own end of the cable, for raw bytes and exact frames."""

    def __init__(self, port: str) -> None:
        self.fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)
        termios.tcflush(self.fd, termios.TCIOFLUSH)
        self.buf = b""
        self.seq = 500000

    def __enter__(self) -> Line:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def write(self, data: bytes) -> None:
        _write_all(self.fd, data)

    def answer(self, seq: str, timeout_s: float) -> tuple[str, dict]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            while b"\n" in self.buf:
                raw, self.buf = self.buf.split(b"\n", 1)
                try:
                    body = unframe(RESPONSE, raw.decode("ascii"))
                except (ValueError, UnicodeError):
                    continue
                if body is None:
                    continue
                rseq, _, rest = body.partition(" ")
                status, _, data = rest.partition(" ")
                if rseq == seq:
                    return status, json.loads(data)
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                self.buf += os.read(self.fd, 65536)
        raise AssertionError(f"no answer to request {seq}")

    def request(self, cmd: str, args: dict | None = None, timeout_s: float = 10):
        self.seq += 1
        self.write(frame(REQUEST, f"{self.seq} {cmd} {json.dumps(args or {})}"))
        return self.answer(str(self.seq), timeout_s)

    def hello(self, timeout_s: float = 10) -> dict:
        status, result = self.request("HELLO", timeout_s=timeout_s)
        assert status == "OK", result
        return result


class QuickClient(Line):
    """ConsoleClient's ``request`` on a Line: answers as soon as they arrive (pyserial's
    read waits out its timeout), for tests that make hundreds of requests."""

    def request(self, cmd: str, args: dict | None = None, timeout_s: float = 10, *, once=False):
        status, result = super().request(cmd, args, timeout_s)
        if status != "OK":
            raise ConsoleRefused(result["code"], result["message"], result["next"])
        return result


def admin(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [str(BIN / "pole-admin"), *args], capture_output=True, text=True, timeout=120
    )
    if check and r.returncode != 0:
        raise AssertionError(f"pole-admin {' '.join(args)} -> {r.returncode}\n{r.stdout}{r.stderr}")
    return r


@pytest.fixture
def city(tmp_path: Path) -> SimpleNamespace:
    """The city: a trust list with two operator keys and an enrolled technician."""
    db = tmp_path / "trust.sqlite"
    op1 = OperatorKey.create(tmp_path / "op1", "city-ops")
    op2 = OperatorKey.create(tmp_path / "op2", "city-ops-2")
    tech = TechnicianKey.create(tmp_path / "tech", "j-devries")
    with TrustList(db) as tl:
        tl.add_operator(op1.name, op1.public_key)
        tl.add_operator(op2.name, op2.public_key)
        tl.add_technician(tech.name, tech.public_key)
    return SimpleNamespace(db=db, auth=tmp_path / "auth", op1=op1, op2=op2, tech=tech)


@pytest.fixture
def pole(tmp_path: Path):
    p = PoleConsole(tmp_path / "pole").start()
    yield p
    p.close()
    text = p.log.read_text()
    assert "Traceback" not in text and "internal error" not in text, text[-2000:]


def provision_args(pole: PoleConsole, city: SimpleNamespace, *extra: str) -> list[str]:
    return [
        "provision", "--pole-id", POLE, "--port", pole.port, "--lat", "51.44", "--lon", "5.47",
        "--board", "sim-pole", "--broker-url", "mqtt://127.0.0.1:1", "--window-s", "5",
        "--label-dir", str(pole.root.parent / "labels"), "--trust-db", str(city.db),
        "--broker-dir", str(city.auth), *extra,
    ]  # fmt: skip


def provisioned(pole: PoleConsole, city: SimpleNamespace) -> None:
    r = admin(*provision_args(pole, city))
    assert "[9/9] finish" in r.stdout and "installed: city-ops, city-ops-2" in r.stdout


def config_of(pole: PoleConsole) -> dict:
    return tomllib.loads(pole.config.read_text())


def challenge(c: ConsoleClient | QuickClient) -> bytes:
    return bytes.fromhex(c.request("HELLO")["challenge"])


def configure_args(window_s: int) -> dict:
    return {"pole_id": POLE, "lat": 51.44, "lon": 5.47, "board": "sim-pole",
            "broker_url": "mqtt://127.0.0.1:1", "window_s": window_s}  # fmt: skip


# -- a finished pole and its authorisations ------------------------------------------------
def test_finished_pole_refuses_changes_without_the_city_and_accepts_them_with_it(pole, city):
    provisioned(pole, city)
    ops = pole.state_dir / OPERATORS_FILE
    assert stat.S_IMODE(ops.stat().st_mode) == 0o644
    kids = {o["kid"] for o in json.loads(ops.read_text())["operators"]}
    assert kids == {city.op1.kid.hex(), city.op2.kid.hex()}
    password = (pole.state_dir / "mqtt.password").read_text()
    requests = {
        "CONFIGURE": configure_args(7),
        "CREDENTIALS": {"pole_id": POLE, "password": "x" * 24},
        "OPERATORS": {"pole_id": POLE, "operators": [
            {"name": "mallory", "public_key": os.urandom(32).hex()}]},
        "WIPE": {"pole_id": POLE},
    }  # fmt: skip
    with ConsoleClient(pole.port) as c:
        hello = c.request("HELLO")
        assert hello["provisioned"] and hello["operators"] and len(hello["challenge"]) == 32
        for cmd, args in requests.items():
            with pytest.raises(ConsoleRefused) as refused:
                c.request(cmd, args)
            assert refused.value.code == "auth_required", cmd
            assert "this pole is finished" in refused.value.message
            # Every refusal says what to do: the exact command for the city, this challenge.
            assert (
                f"pole-admin operator authorise {POLE} {cmd} --challenge {hello['challenge']}"
                in refused.value.next_step
            )
        # Nothing changed, and asking without an authorisation did not use the challenge.
        assert config_of(pole)["window_s"] == 5
        assert (pole.state_dir / "mqtt.password").read_text() == password
        assert {o["kid"] for o in json.loads(ops.read_text())["operators"]} == kids
        assert (pole.state_dir / "identity.key").exists()
        assert c.request("HELLO")["challenge"] == hello["challenge"]

        # With the city's authorisation, each is carried out.
        def authorised(cmd: str, args: dict, key: OperatorKey = city.op1) -> dict:
            token = key.authorise(POLE, cmd, challenge(c)).hex()
            return c.request(cmd, {**args, "auth": token}, once=True)

        assert authorised("CONFIGURE", configure_args(7))["changed"] is True
        assert config_of(pole)["window_s"] == 7
        authorised("CREDENTIALS", requests["CREDENTIALS"], key=city.op2)
        assert (pole.state_dir / "mqtt.password").read_text() == "x" * 24 + "\n"
        only_op1 = [{"name": city.op1.name, "public_key": city.op1.public_key.hex()}]
        assert authorised("OPERATORS", {"pole_id": POLE, "operators": only_op1})["changed"]
        assert [o["kid"] for o in json.loads(ops.read_text())["operators"]] == [city.op1.kid.hex()]
        # op2 is no longer one of this pole's operators.
        with pytest.raises(ConsoleRefused) as refused:
            authorised("CONFIGURE", configure_args(9), key=city.op2)
        assert refused.value.code == "auth_unknown_key"
        assert authorised("WIPE", {"pole_id": POLE}) == {"wiped": True}
        after = c.request("HELLO")
    assert not after["provisioned"] and after["pole_id"] is None and "challenge" not in after
    assert not (pole.state_dir / "identity.key").exists() and not ops.exists()


def test_authorisations_that_must_not_work(pole, city, tmp_path):
    provisioned(pole, city)
    ident = load_identity(pole.state_dir)
    before = pole.config.read_bytes()

    def refused(c: QuickClient, make) -> str:
        ch = challenge(c)
        token = make(ch)
        with pytest.raises(ConsoleRefused) as exc:
            c.request("CONFIGURE", {**configure_args(11), "auth": token}, once=True)
        assert pole.config.read_bytes() == before
        # An attempt uses the challenge up, success or not: the pole hands out a new one.
        assert (challenge(c) != ch) == (token is not None)
        return exc.value.code

    op1 = city.op1
    with QuickClient(pole.port) as c:
        # Wrong roles: a technician's key, the pole's own key, a key the city never enrolled.
        def tech(ch: bytes) -> str:
            return city.tech.sign(auth_payload(POLE, "CONFIGURE", ch, int(time.time()) + 600)).hex()

        assert refused(c, tech) == "auth_unknown_key"
        pole_key = OperatorKey("pole", ident.seed)
        assert refused(c, lambda ch: pole_key.authorise(POLE, "CONFIGURE", ch).hex()) == (
            "auth_unknown_key"
        )
        stranger = OperatorKey.create(tmp_path / "stranger", "mallory")
        assert refused(c, lambda ch: stranger.authorise(POLE, "CONFIGURE", ch).hex()) == (
            "auth_unknown_key"
        )
        # Another pole, another command, a past expiry.
        assert refused(c, lambda ch: op1.authorise("nl-test-00099", "CONFIGURE", ch).hex()) == (
            "auth_wrong_pole"
        )
        assert refused(c, lambda ch: op1.authorise(POLE, "WIPE", ch).hex()) == (
            "auth_wrong_command"
        )
        assert refused(
            c, lambda ch: op1.authorise(POLE, "CONFIGURE", ch, now=time.time() - 3600).hex()
        ) == ("auth_expired")
        # An older challenge (handed out before, then used up by a failed attempt).
        old = challenge(c)
        with pytest.raises(ConsoleRefused):
            c.request("CONFIGURE", {**configure_args(11), "auth": "00"}, once=True)
        assert refused(c, lambda ch: op1.authorise(POLE, "CONFIGURE", old).hex()) == (
            "auth_challenge"
        )
        # Not hex, not CBOR, not COSE, too long.
        for junk in ("zz", "d2", "a0", "00" * 3000, "", 7, None, ["x"]):
            code = refused(c, lambda ch, junk=junk: junk)
            assert code in ("auth_malformed", "auth_required", "bad_request"), (junk, code)
        # Every single changed byte of a valid authorisation is refused.
        n = len(op1.authorise(POLE, "CONFIGURE", b"\0" * 16))
        codes = set()
        for i in range(n):

            def flipped(ch: bytes, i: int = i) -> str:
                token = bytearray(op1.authorise(POLE, "CONFIGURE", ch))
                token[i] ^= 0x01
                return bytes(token).hex()

            codes.add(refused(c, flipped))
        assert codes <= {
            "auth_malformed",
            "auth_bad_signature",
            "auth_unknown_key",
            "auth_wrong_pole",
            "auth_wrong_command",
            "auth_challenge",
            "auth_expired",
        }, codes
        assert "auth_bad_signature" in codes and "auth_unknown_key" in codes

        # A good one works once; the same token again does not (the challenge is used).
        token = op1.authorise(POLE, "CONFIGURE", challenge(c)).hex()
        assert c.request("CONFIGURE", {**configure_args(11), "auth": token}, once=True)["changed"]
        with pytest.raises(ConsoleRefused) as again:
            c.request("CONFIGURE", {**configure_args(12), "auth": token}, once=True)
        assert again.value.code == "auth_challenge"
        assert config_of(pole)["window_s"] == 11
        pending = challenge(c)

    # A restart forgets the challenge (RAM only); a challenge expires after its time.
    pole.stop()
    pole.start("--challenge-ttl", "1")
    with QuickClient(pole.port) as c:
        token = op1.authorise(POLE, "CONFIGURE", pending).hex()
        with pytest.raises(ConsoleRefused) as stale:
            c.request("CONFIGURE", {**configure_args(13), "auth": token}, once=True)
        assert stale.value.code == "auth_challenge"
        ch = challenge(c)
        time.sleep(1.5)
        token = op1.authorise(POLE, "CONFIGURE", ch).hex()
        with pytest.raises(ConsoleRefused) as stale:
            c.request("CONFIGURE", {**configure_args(13), "auth": token}, once=True)
        assert stale.value.code == "auth_challenge"
        assert challenge(c) != ch
        assert config_of(pole)["window_s"] == 11


def test_a_withdrawn_operator_is_removed_from_the_pole_by_an_authorised_update(pole, city):
    provisioned(pole, city)
    admin("trust", "revoke-operator", "city-ops-2", "--db", str(city.db))
    # Provisioning again installs the city's current operators: a change, so it needs an
    # operator key the pole knows.
    r = admin(*provision_args(pole, city), check=False)
    assert r.returncode == 2 and "OPERATORS needs an authorisation" in r.stderr, r.stderr
    r = admin(*provision_args(pole, city, "--operator-key", str(pole.root.parent / "op1")))
    assert "[8/9] install the city's operator keys: installed: city-ops" in r.stdout, r.stdout
    assert "unchanged in" in r.stdout and "already set" in r.stdout
    with ConsoleClient(pole.port) as c:
        token = city.op2.authorise(POLE, "CONFIGURE", challenge(c)).hex()
        with pytest.raises(ConsoleRefused) as refused:
            c.request("CONFIGURE", {**configure_args(7), "auth": token}, once=True)
    assert refused.value.code == "auth_unknown_key"
    assert "technician's key, a withdrawn operator key" in refused.value.message


def test_the_two_step_flow_with_a_token_file_from_the_city(pole, city, tmp_path):
    provisioned(pole, city)
    # The technician wants another window: the pole is finished, so pole-admin stops
    # before anything changes and says what to ask the city for.
    args = provision_args(pole, city)
    args[args.index("--window-s") + 1] = "7"
    r = admin(*args, check=False)
    assert r.returncode == 2 and "CONFIGURE needs an authorisation from the city" in r.stderr
    m = re.search(rf"pole-admin operator authorise {POLE} CONFIGURE --challenge ([0-9a-f]{{32}})",
                  r.stderr)  # fmt: skip
    assert m, r.stderr
    assert config_of(pole)["window_s"] == 5
    # At the city: the token for exactly this pole, command and challenge.
    token = tmp_path / "configure.auth"
    r = admin("operator", "authorise", POLE, "CONFIGURE", "--challenge", m.group(1),
              "--operator-key", str(tmp_path / "op1"), "--out", str(token))  # fmt: skip
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    seed = (tmp_path / "op1" / "operator.key").read_bytes()
    assert seed.hex() not in r.stdout + r.stderr + token.read_text()
    # Back at the pole: the same command with the token.
    r = admin(*args, "--authorisation", str(token))
    assert "[3/9] configure the pole: written to" in r.stdout
    assert config_of(pole)["window_s"] == 7
    # The token is used up; and it never authorises another command.
    r = admin("decommission", POLE, "--port", pole.port, "--authorisation", str(token),
              "--trust-db", str(city.db), "--broker-dir", str(city.auth), check=False)  # fmt: skip
    assert r.returncode == 2 and 'is for "CONFIGURE"' in r.stderr, r.stderr
    # Refused before the city's lists changed: the pole still works.
    with TrustList(city.db) as tl:
        assert tl.active_keys(POLE)
    assert BrokerAuth(city.auth).has_user(POLE) and pole.config.exists()
    m = re.search(r"--challenge ([0-9a-f]{32})", r.stderr)
    assert m, r.stderr
    wipe = tmp_path / "wipe.auth"
    admin("operator", "authorise", POLE, "wipe", "--challenge", m.group(1),
          "--operator-key", str(tmp_path / "op2"), "--out", str(wipe))  # fmt: skip
    r = admin("decommission", POLE, "--port", pole.port, "--authorisation", str(wipe),
              "--trust-db", str(city.db), "--broker-dir", str(city.auth))  # fmt: skip
    assert "key destroyed" in r.stdout
    assert not (pole.state_dir / "identity.key").exists()
    with TrustList(city.db) as tl:
        assert tl.active_keys(POLE) == []


def test_provisioning_needs_an_operator_in_the_trust_list(pole, tmp_path):
    db = tmp_path / "empty.sqlite"
    TrustList(db).close()
    city = SimpleNamespace(db=db, auth=tmp_path / "auth")
    r = admin(*provision_args(pole, city), check=False)
    assert r.returncode == 2 and "has no city operator key" in r.stderr
    assert "pole-admin operator create" in r.stderr and "trust add-operator" in r.stderr
    # Refused before anything changed: no key on the controller, nothing at the city.
    assert not (pole.state_dir / "identity.key").exists()
    assert not (tmp_path / "auth" / "passwd").exists()
    # Offline, the operators come from the city's export, which must be given.
    TechnicianKey.create(tmp_path / "tech", "j-devries")
    r = admin("provision", "--pole-id", POLE, "--port", pole.port, "--lat", "1", "--lon", "1",
              "--broker-url", "mqtt://127.0.0.1:1", "--offline", str(tmp_path / "regs"),
              "--technician-key", str(tmp_path / "tech"), check=False)  # fmt: skip
    assert r.returncode == 2 and "--operators trust.json" in r.stderr


# -- keys and roles at the city --------------------------------------------------------------
def test_operator_keys_files_roles_and_the_exported_list(tmp_path, city):
    old = os.umask(0)
    try:
        r = admin("operator", "create", "--name", "ops-3", "--dir", str(tmp_path / "k"))
    finally:
        os.umask(old)
    key_file = tmp_path / "k" / "operator.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes().hex() not in r.stdout + r.stderr
    rec = json.loads(r.stdout)
    assert rec["operator"] == "ops-3" and "trust add-operator ops-3" in r.stderr
    db = str(city.db)
    admin("trust", "add-operator", "ops-3", "--key-dir", str(tmp_path / "k"), "--db", db)
    admin("trust", "add-operator", "ops-3", "--public-key", rec["public_key"], "--db", db)
    r = admin("trust", "add-operator", "ops-4", "--key-dir", str(tmp_path / "k"), "--db", db,
              check=False)  # fmt: skip
    assert r.returncode == 2 and "made for operator ops-3" in r.stderr
    listing = admin("trust", "list", "--db", db).stdout
    assert re.search(rf"operator ops-3\s+{rec['kid']}  active", listing), listing
    assert "technician j-devries" in listing
    # One key, one role.
    with TrustList(city.db) as tl, pytest.raises(TrustError, match="one key, one role"):
        tl.add_operator("sneaky", city.tech.public_key)
    with TrustList(city.db) as tl, pytest.raises(TrustError, match="one key, one role"):
        tl.add_technician("sneaky", city.op1.public_key)
    with TrustList(city.db) as tl, pytest.raises(TrustError, match="one key, one role"):
        tl.add("nl-x-1", city.op1.public_key)
    r = admin("trust", "add-operator", "bad/name", "--public-key", rec["public_key"], "--db", db,
              check=False)  # fmt: skip
    assert r.returncode == 2 and "not valid" in r.stderr
    admin("trust", "revoke-operator", "ops-3", "--db", db)
    r = admin("trust", "add-operator", "ops-3", "--key-dir", str(tmp_path / "k"), "--db", db,
              check=False)  # fmt: skip
    assert r.returncode == 2 and "was revoked" in r.stderr
    out = tmp_path / "trust.json"
    old = os.umask(0o077)
    try:
        admin("trust", "export", "--db", db, "--out", str(out))
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    doc = json.loads(out.read_text())
    assert doc["format"] == "lightpole-trust-list" and doc["version"] == 1 and doc["keys"] == []
    ops = {o["name"]: o for o in doc["operators"]}
    assert ops["ops-3"]["status"] == "revoked" and ops["city-ops"]["status"] == "active"
    assert ops["city-ops"]["kid"] == city.op1.kid.hex()
    assert set(ops["city-ops"]) == {"name", "kid", "public_key", "alg", "crv", "status",
                                    "cose_key"}  # fmt: skip
    # The private key is read only from a regular file of its own, never through a link.
    link = tmp_path / "linked"
    link.mkdir()
    (link / "operator.key").symlink_to(key_file)
    (link / "operator.json").write_text((tmp_path / "k" / "operator.json").read_text())
    with pytest.raises(PermissionError, match="symbolic link"):
        OperatorKey.load(link)
    key_file.chmod(0o640)
    with pytest.raises(PermissionError, match="readable by others"):
        OperatorKey.load(tmp_path / "k")
    assert "operator.key" not in repr(city.op1) and city.op1.kid.hex() in repr(city.op1)


def test_an_operator_key_cannot_register_a_pole(tmp_path, city):
    from provisioning.sync import sync_registrations

    regs = tmp_path / "regs"
    regs.mkdir()
    ident = create_identity(tmp_path / "p", "nl-test-00008")
    fake = make_registration(city.op1, {"pole_id": ident.pole_id, "public_key": ident.public_key,
                                        "nonce": b"\0" * 16, "proof": b"\0" * 64})  # fmt: skip
    (regs / "op.lpreg").write_bytes(fake)
    with TrustList(city.db) as tl:
        [(path, ok, msg)] = sync_registrations([regs], tl, None)
        assert not ok and "technician" in msg, msg
        assert tl.active_keys(ident.pole_id) == []


# -- hostile bytes -----------------------------------------------------------------------------
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)  # fmt: skip
_COMMANDS = ["HELLO", "KEYGEN", "CONFIGURE", "PUBKEY", "CREDENTIALS", "OPERATORS", "FINISH",
             "WIPE", "hello", "", "LP?", "X" * 80]  # fmt: skip
_NASTY = [
    "[" * 5000, "{\"a\":" * 3000, "1" * 5000, "-" + "9" * 400, "1e999", "NaN", "Infinity",
    "-Infinity", "\"\\ud800\"", "{\"pole_id\": \"\\u0000\"}", "{\"lat\": 1e308, \"lon\": -1e308}",
    "{\"window_s\": 99999999999999999999999999}", "{\"sensors\": [[[[[]]]]]}", "{}" * 3,
    "{\"auth\": \"" + "ab" * 1500 + "\"}", "\"unterminated",
]  # fmt: skip


def _args_for(cmd_keys: list[str]) -> st.SearchStrategy[dict]:
    return st.dictionaries(st.sampled_from(cmd_keys) | st.text(max_size=10), _JSON, max_size=6)


_ARG_TEXT = st.one_of(
    _JSON.map(lambda v: json.dumps(v, ensure_ascii=False)),
    _args_for([*CONFIGURE_KEYS, "auth", "dry_run", "password", "nonce", "operators"]).map(
        json.dumps
    ),
    st.sampled_from(_NASTY),
    st.text(max_size=60),
)
_FRAME = st.builds(
    lambda seq, cmd, args: f"{seq} {cmd} {args}",
    st.one_of(st.integers(0, 10**12).map(str), st.text(max_size=12)),
    st.sampled_from(_COMMANDS),
    _ARG_TEXT,
)


def _with_crc(body: str) -> bytes:
    return f"{REQUEST} {body} {crc(body)}".encode("utf-8", "surrogatepass")


_LINE = st.one_of(
    st.binary(max_size=200),
    _FRAME.map(_with_crc),
    _FRAME.map(lambda b: f"{REQUEST} {b} 00000000".encode("utf-8", "surrogatepass")),
    st.text(max_size=100).map(lambda t: (REQUEST + " " + t).encode("utf-8", "surrogatepass")),
    st.just(REQUEST.encode() + b" " + b"A" * 20000),
    st.binary(min_size=1, max_size=40).map(lambda b: b"LP? 1 HELLO {} " + b),
)


def test_fuzzed_frames_never_crash_pole_console(pole, city):
    """Random bodies, valid CRCs around random JSON, junk and over-long lines, against a
    finished pole: the process stays up and answers HELLO after every example."""
    provisioned(pole, city)
    before = pole.config.read_bytes()
    examples = []
    with Line(pole.port) as line:

        @settings(
            max_examples=150,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(st.lists(_LINE, min_size=1, max_size=4))
        def fuzz(lines: list[bytes]) -> None:
            for data in lines:
                line.write(data + b"\n")
            assert pole.alive()
            assert line.hello()["provisioned"] is True
            examples.append(len(lines))

        fuzz()
    assert len(examples) >= 100
    assert pole.alive() and pole.config.read_bytes() == before


# -- the agent in-process ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    """An unprovisioned and a finished controller (state made by the agent itself)."""
    fresh = ConsoleAgent(tmp_path_factory.mktemp("fresh") / "state", Path("/nonexistent/p.toml"))
    root = tmp_path_factory.mktemp("done")
    done = ConsoleAgent(root / "state", root / "pole.toml")
    op = OperatorKey("city-ops", b"\1" * 32)
    for cmd, args in (
        ("KEYGEN", {"pole_id": POLE}),
        ("CONFIGURE", configure_args(5)),
        ("CREDENTIALS", {"pole_id": POLE, "password": "p" * 20}),
        ("OPERATORS", {"pole_id": POLE, "operators": [
            {"name": op.name, "public_key": op.public_key.hex()}]}),
        ("FINISH", {"pole_id": POLE}),
    ):  # fmt: skip
        out = done.handle(frame(REQUEST, f"1 {cmd} {json.dumps(args)}").decode())
        assert out is not None and b" OK " in out, out
    return fresh, done


_ANY_TEXT = st.text(alphabet=st.characters(categories=["Cs", "Cc", "L", "N", "P", "S", "Zs"]))


@settings(max_examples=400, deadline=None)
@given(
    which=st.integers(0, 1),
    body=st.one_of(_FRAME, _ANY_TEXT.map(lambda t: "1 CONFIGURE " + t)),
    raw=_ANY_TEXT,
)
def test_handle_never_raises_on_any_input(agents, which, body, raw):
    agent = agents[which]
    for line in (raw, f"{REQUEST} {raw}", f"{REQUEST} {body} {crc_or_zero(body)}"):
        out = agent.handle(line)
        assert out is None or (out.startswith(RESPONSE.encode()) and out.endswith(b"\n"))
        if out is not None:
            out.decode("ascii")  # always ASCII, one line
            assert out.count(b"\n") == 1
    assert agents[1].finished()  # nothing un-finishes a finished pole without the city


def test_every_nasty_argument_gets_an_answer(agents):
    """Deep nesting, huge numbers, NaN/Infinity, NUL, unterminated strings, over-long
    tokens: for every command on both controllers, an answer, never an exception."""
    for agent in agents:
        for cmd in _COMMANDS[:8]:
            for nasty in _NASTY:
                out = agent.handle(
                    f"{REQUEST} {'4 ' + cmd + ' ' + nasty} {crc('4 ' + cmd + ' ' + nasty)}"
                )
                assert out is not None and b" ERR " in out, (cmd, nasty[:20], out)
    assert agents[1].finished()


def crc_or_zero(body: str) -> str:
    try:
        return crc(body)
    except UnicodeError:
        return "00000000"


_SECRET = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=65, max_size=90)


@settings(max_examples=100, deadline=None)
@given(secret=_SECRET, where=st.sampled_from(
    ["key", "pole_id", "board", "broker_url", "ca_file", "topic_prefix", "auth", "command",
     "sensor_model", "option"]))  # fmt: skip
def test_refusals_never_echo_the_input(agents, secret, where):
    """Long or strange values are described (type, length), never repeated."""
    args = configure_args(5)
    cmd = "CONFIGURE"
    if where == "key":
        args[secret] = 1
    elif where == "command":
        cmd = secret
    elif where == "sensor_model":
        args["sensors"] = [{"model": secret}]
    elif where == "option":
        args["sensors"] = [{"model": "bme280", "options": {"x": secret + "\n"}}]
    else:
        args[where] = secret + ('\n"' if where == "ca_file" else "")
    for agent in agents:
        out = agent.handle(frame(REQUEST, f"3 {cmd} {json.dumps(args)}").decode())
        assert out is not None and b" ERR " in out
        assert secret.encode() not in out


def test_messages_from_the_config_loader_are_scrubbed():
    from edge.console_args import scrub

    long = "B" * 80
    out = scrub(f"mqtt.url 'mqtt://{long}:1' \x1b[31m: no", {"mqtt": {"url": f"mqtt://{long}:1"}})
    assert long not in out and "a 89-character string" in out and "\x1b" not in out


def test_configure_is_whitelisted_and_written_by_a_toml_writer(tmp_path):
    agent = ConsoleAgent(tmp_path / "state", tmp_path / "pole.toml")

    def ask(cmd: str, args: dict) -> tuple[str, dict]:
        out = agent.handle(frame(REQUEST, f"9 {cmd} {json.dumps(args)}").decode())
        body = unframe(RESPONSE, out.decode())
        _, status, data = body.split(" ", 2)
        return status, json.loads(data)

    assert ask("KEYGEN", {"pole_id": POLE})[0] == "OK"
    status, err = ask("CONFIGURE", {**configure_args(5), "state_dir": "/tmp/evil"})
    assert status == "ERR" and '"state_dir"' in err["message"]
    status, err = ask("CONFIGURE", {**configure_args(5), "board": "../../etc/passwd"})
    assert status == "ERR" and err["code"] == "bad_name"
    status, err = ask("CONFIGURE", {**configure_args(5), "window_s": True})
    assert status == "ERR" and "window_s" in err["message"]
    status, err = ask("CONFIGURE", {**configure_args(5), "lat": "51"})
    assert status == "ERR" and "lat" in err["message"]
    status, err = ask("CONFIGURE", {**configure_args(5), "broker_url": "mqtt://h:1\n[x]"})
    assert status == "ERR"
    bad_sensor = {"model": "bme280", "i2c_bus": 1, "x": 2}
    status, err = ask("CONFIGURE", {**configure_args(5), "sensors": [bad_sensor]})
    assert status == "ERR" and '"x"' in err["message"]
    # Quotes, brackets and TOML syntax in a value stay a value.
    tricky = 'a"b\\c]] = [x'
    status, res = ask(
        "CONFIGURE",
        {**configure_args(5), "ca_file": tricky,
         "sensors": [{"model": "bme280", "i2c_bus": 1, "address": 118,
                      "options": {"note": 'x" \n'.strip() + "y = 1"}}]},
    )  # fmt: skip
    assert status == "OK", res
    cfg = tomllib.loads((tmp_path / "pole.toml").read_text())
    assert cfg["mqtt"]["ca_file"] == tricky and set(cfg) >= {"pole_id", "mqtt", "location"}
    assert cfg["sensors"][0]["options"] == {"note": 'x"y = 1'}
    assert "window_offset_s" not in cfg and "privacy" not in cfg

"""``pole-admin provision``: bring a new pole controller online from the technician's laptop.

Nine steps, each idempotent (it first asks whether it is already done), so an
interrupted run is finished by running the same command again, and the pole ends up
with exactly one identity:

1. connect          the controller's console answers (HELLO)
2. key              the controller generates its Ed25519 key, there (KEYGEN)
3. configure        pole id, location, board, broker written to the pole's TOML file
4. public key       read back with a proof of possession over a fresh nonce (PUBKEY)
5. credentials      a broker password: its hash for Mosquitto, the password for the pole
6. register         the key into the city's trust list (online), or a signed offline
                    registration file for ``pole-admin trust sync`` (offline)
7. label            PNG and SVG label with a QR code of pole id and key fingerprint
8. operator keys    the city's operator public keys, from the trust list (OPERATORS):
                    the only keys that can authorise changes once the pole is finished
9. finish           the controller marks itself provisioned; its daemon may start

On a finished pole (run again after an interruption, or to change something) a step
that would change nothing is skipped without asking; one that would change the pole
(CONFIGURE, CREDENTIALS, OPERATORS) needs the city's one-time authorisation
(``--operator-key`` or ``--authorisation``, provisioning/operator.py).

``replace`` (``pole-admin replace-controller``): the same pole id on a new controller;
step 6 revokes the old controller's key and the new key takes over.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from edge.cose import fingerprint
from edge.names import InvalidName, check_pole_id
from edge.state import atomic_write
from provisioning.broker_auth import BrokerAuth, password_hash
from provisioning.console_client import ConsoleClient, ConsoleRefused, ProvisionError, printable
from provisioning.operator import Authoriser
from provisioning.registration import (
    TechnicianKey,
    make_registration,
    read_registration,
    registration_path,
    verify_proof,
)
from provisioning.trustlist import TrustError, TrustList, load_operators

STEPS = (
    "connect to the controller",
    "generate the key on the controller",
    "configure the pole",
    "read back the public key",
    "broker credentials",
    "register the key",
    "print the label",
    "install the city's operator keys",
    "finish",
)

NO_OPERATOR = (
    "enrol one at the city (once): 'pole-admin operator create --name NAME' on the city's "
    "machine, then 'pole-admin trust add-operator NAME --key-dir DIR --db trust.sqlite' "
    "(and export the trust list again for offline work)"
)


class Plan:
    """What the technician asked for (from the command line)."""

    def __init__(
        self,
        pole_id: str,
        lat: float,
        lon: float,
        board: str,
        broker_url: str,
        label_dir: Path,
        trust_db: Path | None = None,
        broker_dir: Path | None = None,
        offline_dir: Path | None = None,
        technician: TechnicianKey | None = None,
        topic_prefix: str = "poles",
        window_s: int | None = None,
        ca_file: str | None = None,
        replace: bool = False,
        operators_source: Path | None = None,
        authoriser: Authoriser | None = None,
        new_password: bool = False,
        public_url: str | None = None,
    ) -> None:
        try:
            check_pole_id(pole_id)
        except InvalidName as exc:
            raise ProvisionError(
                str(exc), "the number on the mast: letters, digits and '-', e.g. nl-ehv-00042"
            ) from None
        self.pole_id = pole_id
        self.lat = lat
        self.lon = lon
        self.board = board
        self.broker_url = broker_url
        self.label_dir = label_dir
        self.trust_db = trust_db
        self.broker_dir = broker_dir
        self.offline_dir = offline_dir
        self.technician = technician
        self.topic_prefix = topic_prefix
        self.window_s = window_s
        self.ca_file = ca_file
        self.replace = replace
        self.new_password = new_password  # replace a working broker password on purpose
        self.public_url = public_url  # the label's QR code opens <public_url>/<pole id>
        self.authoriser = authoriser or Authoriser()
        # The city's operator keys come from the trust list, or its export (offline).
        self.operators_source = operators_source or (None if offline_dir else trust_db)
        if offline_dir is None and (trust_db is None or broker_dir is None):
            raise ProvisionError(
                "online provisioning needs the trust list and the broker's credential files",
                "give --trust-db and --broker-dir, or record an offline registration with "
                "--offline DIR --technician-key FILE and sync it later",
            )
        if offline_dir is not None and technician is None:
            raise ProvisionError(
                "an offline registration must be signed by you",
                "give --technician-key (made with 'pole-admin technician create')",
            )
        if self.operators_source is None:
            raise ProvisionError(
                "the pole needs the city's operator keys, and offline there is no trust list",
                "give --operators trust.json (the city's export: pole-admin trust export)",
            )


class Provisioner:
    def __init__(
        self, client: ConsoleClient, plan: Plan, say: Callable[[str], None] = print
    ) -> None:
        self.c = client
        self.plan = plan
        self.say = say
        self.status: dict = {}
        self.record: dict = {}
        self.password: str | None = None
        self.nonce = b""
        self.proof = b""
        self.operators: list[dict] = []

    def _step(self, i: int, outcome: str) -> None:
        self.say(printable(f"[{i}/{len(STEPS)}] {STEPS[i - 1]}: {outcome}"))

    @property
    def finished(self) -> bool:
        return bool(self.status.get("provisioned"))

    def run(self) -> dict:
        p = self.plan
        self.say(f"provisioning pole {p.pole_id} on {self.c.port}")
        self.status = self.c.request("HELLO")
        done = "already provisioned" if self.finished else "ok"
        self._step(1, f"{self.status['software']}, protocol {self.status['protocol']} ({done})")
        self.load_operators()
        self.key()
        self.configure()
        self.public_key()
        self.preflight()
        self.credentials()
        self.register()
        self.label()
        self.install_operators()
        self.c.request("FINISH", {"pole_id": p.pole_id})
        self._step(9, "the controller is provisioned; its daemon starts now")
        token = p.authoriser.token
        if token is not None and not p.authoriser.used:
            self.say(printable(f"note: the authorisation for {token.command} was not needed"))
        return self.record

    def load_operators(self) -> None:
        """The city's active operator keys; refuse (before anything changes) without one:
        a finished pole without them could never be changed again."""
        src = self.plan.operators_source
        assert src is not None
        try:
            self.operators = load_operators(src)
        except TrustError as exc:
            raise ProvisionError(str(exc), "give --operators with the city's trust list") from None
        if not self.operators:
            raise ProvisionError(
                f"the trust list {src} has no city operator key, so the pole could never be "
                "changed once finished",
                NO_OPERATOR,
            )

    def guarded(self, command: str, args: dict) -> dict:
        """A command that changes the pole: on a finished pole, with the city's one-time
        authorisation for the challenge the pole hands out now. (A pole that was not
        finished when this run began is not finished before step 9.)"""
        if not self.finished:
            return self.c.request(command, args)
        status = self.c.request("HELLO")
        challenge = _challenge(status)
        token = self.plan.authoriser.token_for(self.plan.pole_id, command, challenge)
        return self.c.request(command, {**args, "auth": token}, once=True)

    def need_authorisation(self, command: str) -> None:
        """Before anything changes at the city: can ``command`` be authorised here?"""
        status = self.c.request("HELLO")
        if status.get("provisioned"):
            self.plan.authoriser.require(self.plan.pole_id, command, _challenge(status))

    def key(self) -> None:
        try:
            rec = self.c.request("KEYGEN", {"pole_id": self.plan.pole_id})
        except ConsoleRefused as exc:
            if exc.code == "wrong_pole":
                old = self.status.get("pole_id")
                raise ProvisionError(
                    exc.message,
                    f"check the pole number on the mast; if this controller comes from pole "
                    f"{old}, retire it there first: 'pole-admin decommission {old} --port ...'",
                ) from None
            raise
        self.record = rec
        how = "generated a new key" if rec["created"] else "already there (kept)"
        self._step(2, f"{how}, fingerprint {rec['fingerprint']}")

    def configure(self) -> None:
        p = self.plan
        args = {
            "pole_id": p.pole_id,
            "lat": p.lat,
            "lon": p.lon,
            "board": p.board,
            "broker_url": p.broker_url,
            "topic_prefix": p.topic_prefix,
            "window_s": p.window_s,
            "ca_file": p.ca_file,
        }
        if self.finished:  # only a change needs the city's authorisation
            res = self.c.request("CONFIGURE", {**args, "dry_run": True})
            if res["changed"]:
                res = self.guarded("CONFIGURE", args)
        else:
            res = self.c.request("CONFIGURE", args)
        self._step(3, ("written to " if res["changed"] else "unchanged in ") + res["config"])

    def public_key(self) -> None:
        self.nonce = os.urandom(16)
        rec = self.c.request("PUBKEY", {"pole_id": self.plan.pole_id, "nonce": self.nonce.hex()})
        pk = bytes.fromhex(rec["public_key"])
        self.proof = bytes.fromhex(rec["proof"])
        if rec["public_key"] != self.record["public_key"] or not verify_proof(
            self.plan.pole_id, pk, self.nonce, self.proof
        ):
            raise ProvisionError(
                "the controller's proof of possession does not verify",
                "the console line is unreliable or the controller is not genuine: do not "
                "register it; call the city's security contact",
            )
        self.public = pk
        self._step(4, f"proof of possession verified, fingerprint {fingerprint(pk)}")

    def _pending_registration(self) -> Path | None:
        if self.plan.offline_dir is None:
            return None
        path = registration_path(self.plan.offline_dir, self.plan.pole_id, self.public)
        return path if path.exists() else None

    def _synced_registration(self) -> Path | None:
        """This key's registration after ``trust sync`` moved it to ``synced/``."""
        if self.plan.offline_dir is None:
            return None
        pending = registration_path(self.plan.offline_dir, self.plan.pole_id, self.public)
        path = pending.parent / "synced" / pending.name
        return path if path.exists() else None

    def credentials(self) -> None:
        p = self.plan
        have = self.c.request("HELLO")["credentials"]
        if p.offline_dir is None:
            auth = BrokerAuth(p.broker_dir, topic_prefix=p.topic_prefix)  # type: ignore[arg-type]
            if have and auth.has_user(p.pole_id) and not p.replace:
                self._step(5, f"already set for broker user {p.pole_id}")
                return
            if self.finished:
                # The pole first, then the broker: a refused authorisation must not leave
                # the broker with a password the pole does not know.
                self.need_authorisation("CREDENTIALS")
                password = _new_password()
                self.guarded("CREDENTIALS", {"pole_id": p.pole_id, "password": password})
                auth.set_hash(p.pole_id, password_hash(password))
                self.password = password
                self._step(5, f"new password sent to the controller; set in {auth.passwd}")
                return
            password = auth.add(p.pole_id)
            where = f"added to {auth.passwd} (reload Mosquitto)"
        else:
            if have and self._pending_registration() is not None and not p.new_password:
                self._step(5, "already set (hash in the pending registration)")
                return
            if have and self._synced_registration() is not None and not p.new_password:
                # Registered at the city already: a new password now would lock the pole
                # out of the broker from its next restart until the new file is synced.
                self._step(
                    5,
                    "already set and registered at the city (--new-password to "
                    "replace it, then sync before the pole restarts)",
                )
                return
            password = _new_password()
            where = "hash goes into the signed registration"
        self.guarded("CREDENTIALS", {"pole_id": p.pole_id, "password": password})
        self.password = password
        self._step(5, f"new password sent to the controller; {where}")

    def preflight(self) -> None:
        """Before anything changes at the city (broker password, trust list): refuse what
        step 6 would refuse, so a mistaken run cannot lock a working pole out."""
        p = self.plan
        if p.offline_dir is not None:
            return  # checked by 'trust sync' at the office
        # A pole's broker user is its pole id: a pole id that names one of the city's
        # reader accounts would give that account's password to the pole.
        auth = BrokerAuth(p.broker_dir, topic_prefix=p.topic_prefix)  # type: ignore[arg-type]
        if auth.role(p.pole_id) == "reader":
            raise ProvisionError(
                f"{p.pole_id} is one of the city's reader accounts", "check the pole number"
            )
        with TrustList(p.trust_db) as tl:  # type: ignore[arg-type]
            mine = [r for r in tl.records() if r.public_key == self.public]
            others = [r for r in tl.active_keys(p.pole_id) if r.public_key != self.public]
        fp = fingerprint(self.public)
        if mine and not mine[0].active:
            raise ProvisionError(
                f"the controller on this cable (fingerprint {fp}) holds a revoked key: it was "
                "replaced or decommissioned before",
                f"if you meant the new controller, plug into that one; to reuse this one, wipe "
                f"it with 'pole-admin decommission {p.pole_id} --port {self.c.port}' (with no "
                "--trust-db, only the controller is wiped; a finished controller also needs "
                "the city's authorisation: --operator-key DIR or --authorisation FILE) and "
                "provision it again",
            )
        if mine and mine[0].pole_id != p.pole_id:
            raise ProvisionError(
                f"this controller's key is registered for pole {mine[0].pole_id}",
                f"decommission {mine[0].pole_id} first",
            )
        if others and not p.replace:
            raise ProvisionError(
                f"pole {p.pole_id} already has another active key (kid {others[0].kid.hex()}); "
                f"the controller on this cable has fingerprint {fp}",
                f"if {fp} is on the label of the pole's old controller, you are plugged into "
                f"the wrong one; if this is a new controller for the pole, run 'pole-admin "
                f"replace-controller {p.pole_id} ...'; if the pole number is wrong, fix it",
            )

    def register(self) -> None:
        p = self.plan
        if p.offline_dir is not None:
            self._register_offline()
            return
        with TrustList(p.trust_db) as tl:  # type: ignore[arg-type]
            others = [r for r in tl.active_keys(p.pole_id) if r.public_key != self.public]
            if others and not p.replace:  # preflight said so; the list changed meanwhile
                raise ProvisionError(
                    f"pole {p.pole_id} got another active key meanwhile", "run the command again"
                )
            try:  # the new key first: a pole is never left without an active key
                rec = tl.add(p.pole_id, self.public, note=f"provisioned at {p.lat},{p.lon}")
            except TrustError as exc:
                raise ProvisionError(
                    str(exc),
                    f"wipe this controller with 'pole-admin decommission {p.pole_id} --port "
                    f"{self.c.port}' (without --trust-db only the controller is wiped) and "
                    "provision it again",
                ) from None
            for r in others:
                tl.revoke(kid=r.kid.hex())
        extra = f"; revoked {len(others)} old key(s)" if others else ""
        self._step(6, f"kid {rec.kid.hex()} active in {p.trust_db}{extra}")

    def _register_offline(self) -> None:
        p = self.plan
        assert p.offline_dir is not None and p.technician is not None
        pending = self._pending_registration() or self._synced_registration()
        if pending is not None and self.password is None:
            self._step(6, f"already recorded in {pending}")
            return
        if self.password is None:  # credentials were set earlier but the file is gone
            raise ProvisionError("internal: no password for the registration", "run again")
        fields = {
            "pole_id": p.pole_id,
            "public_key": self.public,
            "nonce": self.nonce,
            "proof": self.proof,
            "lat": p.lat,
            "lon": p.lon,
            "board": p.board,
            "broker_user": p.pole_id,
            "broker_hash": password_hash(self.password),
            "replaces": p.replace,
        }
        data = make_registration(p.technician, fields)
        tech = p.technician
        read_registration(data, lambda kid: (tech.name, tech.public_key, "active"))  # self-check
        p.offline_dir.mkdir(parents=True, exist_ok=True)
        path = registration_path(p.offline_dir, p.pole_id, self.public)
        atomic_write(path, data, mode=0o600)  # holds the broker password's hash
        self._step(
            6,
            f"signed registration written to {path}; at the office: pole-admin trust sync "
            f"{path.parent} --db TRUST.sqlite --broker-dir BROKER_DIR",
        )

    def label(self) -> None:
        from provisioning.label import write_label

        png, svg = write_label(
            self.plan.label_dir,
            self.plan.pole_id,
            fingerprint(self.public),
            self.plan.lat,
            self.plan.lon,
            self.plan.public_url,
        )
        self._step(7, f"{png} and {svg}")

    def install_operators(self) -> None:
        args = {"pole_id": self.plan.pole_id, "operators": self.operators}
        if self.finished:
            res = self.c.request("OPERATORS", {**args, "dry_run": True})
            if res["changed"]:
                res = self.guarded("OPERATORS", args)
        else:
            res = self.c.request("OPERATORS", args)
        names = ", ".join(printable(n) for n in res.get("operators", []))
        how = "installed" if res["changed"] else "already installed"
        self._step(8, f"{how}: {names}")


def _challenge(status: dict) -> bytes:
    try:
        challenge = bytes.fromhex(status["challenge"])
    except (KeyError, TypeError, ValueError):
        challenge = b""
    if len(challenge) != 16:
        raise ProvisionError(
            "the finished controller did not hand out a challenge for an authorisation",
            "update the controller's software (pole-console) and run again",
        )
    return challenge


def _new_password() -> str:
    import secrets

    return secrets.token_urlsafe(24)


def decommission(
    pole_id: str,
    trust_db: Path | None,
    broker_dir: Path | None,
    client: ConsoleClient | None,
    say: Callable[[str], None] = print,
    topic_prefix: str = "poles",
    authoriser: Authoriser | None = None,
) -> None:
    """Retire a pole: revoke its keys, remove its broker user, wipe the controller (a
    finished one only with the city's authorisation, asked for before anything changes)."""
    authoriser = authoriser or Authoriser()
    status: dict = {}
    if client is not None:
        status = client.request("HELLO")
        if status["provisioned"] and status["pole_id"] == pole_id:
            authoriser.require(pole_id, "WIPE", _challenge(status))
    if trust_db is not None:
        with TrustList(trust_db) as tl:
            n = tl.revoke(pole_id=pole_id)
        say(f"trust list: revoked {n} key(s) of {pole_id}; export it again for verifiers")
    if broker_dir is not None:
        found = BrokerAuth(broker_dir, topic_prefix=topic_prefix).remove(pole_id)
        say(f"broker: user {pole_id} {'removed' if found else 'was not there'}; reload Mosquitto")
    if client is not None:
        status = client.request("HELLO")
        if status["pole_id"] is None:
            say("controller: holds no identity (already wiped)")
            return
        args = {"pole_id": pole_id}
        if status["provisioned"] and status["pole_id"] == pole_id:
            token = authoriser.token_for(pole_id, "WIPE", _challenge(status))
            client.request("WIPE", {**args, "auth": token}, once=True)
        else:
            client.request("WIPE", args)
        say("controller: key destroyed, credentials and configuration removed")

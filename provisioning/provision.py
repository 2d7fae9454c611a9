"""``pole-admin provision``: bring a new pole controller online from the technician's laptop.

Eight steps, each idempotent (it first asks whether it is already done), so an
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
8. finish           the controller marks itself provisioned; its daemon may start

``replace`` (``pole-admin replace-controller``): the same pole id on a new controller;
step 6 revokes the old controller's key and the new key takes over.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from edge.cose import fingerprint
from provisioning.broker_auth import BrokerAuth, password_hash
from provisioning.console_client import ConsoleClient, ConsoleRefused, ProvisionError
from provisioning.registration import (
    TechnicianKey,
    make_registration,
    read_registration,
    registration_path,
    verify_proof,
)
from provisioning.trustlist import TrustError, TrustList

STEPS = (
    "connect to the controller",
    "generate the key on the controller",
    "configure the pole",
    "read back the public key",
    "broker credentials",
    "register the key",
    "print the label",
    "finish",
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
    ) -> None:
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

    def _step(self, i: int, outcome: str) -> None:
        self.say(f"[{i}/{len(STEPS)}] {STEPS[i - 1]}: {outcome}")

    def run(self) -> dict:
        p = self.plan
        self.say(f"provisioning pole {p.pole_id} on {self.c.port}")
        self.status = self.c.request("HELLO")
        done = "already provisioned" if self.status["provisioned"] else "ok"
        self._step(1, f"{self.status['software']}, protocol {self.status['protocol']} ({done})")
        self.key()
        self.configure()
        self.public_key()
        self.preflight()
        self.credentials()
        self.register()
        self.label()
        self.c.request("FINISH", {"pole_id": p.pole_id})
        self._step(8, "the controller is provisioned; its daemon starts now")
        return self.record

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

    def credentials(self) -> None:
        p = self.plan
        have = self.c.request("HELLO")["credentials"]
        if p.offline_dir is None:
            auth = BrokerAuth(p.broker_dir, topic_prefix=p.topic_prefix)  # type: ignore[arg-type]
            if have and auth.has_user(p.pole_id) and not p.replace:
                self._step(5, f"already set for broker user {p.pole_id}")
                return
            password = auth.add(p.pole_id)
            where = f"added to {auth.passwd} (reload Mosquitto)"
        else:
            if have and self._pending_registration() is not None:
                self._step(5, "already set (hash in the pending registration)")
                return
            password = _new_password()
            where = "hash goes into the signed registration"
        self.c.request("CREDENTIALS", {"pole_id": p.pole_id, "password": password})
        self.password = password
        self._step(5, f"new password sent to the controller; {where}")

    def preflight(self) -> None:
        """Before anything changes at the city (broker password, trust list): refuse what
        step 6 would refuse, so a mistaken run cannot lock a working pole out."""
        p = self.plan
        if p.offline_dir is not None:
            return  # checked by 'trust sync' at the office
        tl = TrustList(p.trust_db)  # type: ignore[arg-type]
        try:
            mine = [r for r in tl.records() if r.public_key == self.public]
            others = [r for r in tl.active_keys(p.pole_id) if r.public_key != self.public]
        finally:
            tl.close()
        fp = fingerprint(self.public)
        if mine and not mine[0].active:
            raise ProvisionError(
                f"the controller on this cable (fingerprint {fp}) holds a revoked key: it was "
                "replaced or decommissioned before",
                f"if you meant the new controller, plug into that one; to reuse this one, wipe "
                f"it with 'pole-admin decommission {p.pole_id} --port {self.c.port}' (with no "
                "--trust-db, only the controller is wiped) and provision it again",
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
        tl = TrustList(p.trust_db)  # type: ignore[arg-type]
        try:
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
        finally:
            tl.close()
        extra = f"; revoked {len(others)} old key(s)" if others else ""
        self._step(6, f"kid {rec.kid.hex()} active in {p.trust_db}{extra}")

    def _register_offline(self) -> None:
        p = self.plan
        assert p.offline_dir is not None and p.technician is not None
        pending = self._pending_registration()
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
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
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
        )
        self._step(7, f"{png} and {svg}")


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
) -> None:
    """Retire a pole: revoke its keys, remove its broker user, wipe the controller."""
    if trust_db is not None:
        tl = TrustList(trust_db)
        try:
            n = tl.revoke(pole_id=pole_id)
        finally:
            tl.close()
        say(f"trust list: revoked {n} key(s) of {pole_id}; export it again for verifiers")
    if broker_dir is not None:
        found = BrokerAuth(broker_dir, topic_prefix=topic_prefix).remove(pole_id)
        say(f"broker: user {pole_id} {'removed' if found else 'was not there'}; reload Mosquitto")
    if client is not None:
        status = client.request("HELLO")
        if status["pole_id"] is None:
            say("controller: holds no identity (already wiped)")
        else:
            client.request("WIPE", {"pole_id": pole_id})
            say("controller: key destroyed, credentials and configuration removed")

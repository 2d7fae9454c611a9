"""``pole-admin``: tools for field technicians and the city.

At the pole (technician's laptop on the controller's serial console; docs/technician.md):
pole-admin provision          --port /dev/ttyUSB0 --pole-id ID --lat LAT --lon LON ...
pole-admin commission POLE    --broker URL --trust trust.json ...
pole-admin replace-controller POLE --port /dev/ttyUSB0 ...
pole-admin decommission POLE  --trust-db trust.sqlite --broker-dir DIR [--port ...]
pole-admin label              --pole-id ID --fingerprint FP --lat LAT --lon LON
pole-admin technician create  --name NAME

At the city:
pole-admin trust add|revoke|list|export|sync|add-technician|revoke-technician --db trust.sqlite
pole-admin trust add-operator|revoke-operator NAME --db trust.sqlite
pole-admin operator create    --name NAME   (the city's key: authorises changes to finished poles)
pole-admin operator authorise POLE COMMAND --challenge HEX --out FILE
pole-admin broker add|remove  --dir DIR --user USER
pole-admin verify             --broker mqtt://HOST:PORT --trust trust.json
pole-admin audit              --board BOARD | --config pole.toml

On a controller by hand: pole-admin identity create|show|rotate --state-dir DIR"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path

from edge.names import InvalidName, check_id
from edge.state import PUB_FILE, create_identity, load_identity, read_private
from provisioning.broker_auth import BrokerAuth, write_secret
from provisioning.console_client import ProvisionError
from provisioning.trustlist import TrustError, TrustList, load_keys


# -- argument types: every name from the command line follows the one rule (edge.names) --
def _name(what: str, example: str = ""):
    """An argparse ``type`` for a name (pole id, user, technician, operator, board):
    refused with the rule, before anything runs, if it breaks it."""

    def parse(value: str) -> str:
        try:
            return check_id(value, what)
        except InvalidName as exc:
            raise argparse.ArgumentTypeError(f"{exc}{example}") from None

    parse.__name__ = what
    return parse


_pole = _name("pole id", " (the number on the mast, e.g. nl-ehv-00042)")
_user = _name("broker user")
_technician = _name("technician")
_operator = _name("operator")
_board = _name("board")


def _prefix(value: str) -> str:
    """A topic prefix: one or more levels, each following the name rule (no wildcards)."""
    for level in value.split("/"):
        try:
            check_id(level, "topic prefix level")
        except InvalidName as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _public_url(value: str) -> str:
    """The base URL of the city's public pages (the labels' QR codes open them)."""
    from provisioning.label import check_public_url

    try:
        return check_public_url(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _kid(value: str) -> str:
    """A key id as the trust list prints it: 16 hex digits."""
    kid = value.strip().lower()
    if len(kid) != 16 or any(c not in "0123456789abcdef" for c in kid):
        raise argparse.ArgumentTypeError(
            "a kid is 16 hex digits, as 'pole-admin trust list' shows it"
        )
    return kid


def _identity_create(a: argparse.Namespace) -> int:
    try:
        ident = create_identity(a.state_dir, a.pole_id)
    except FileExistsError:
        ident = load_identity(a.state_dir)
        print(
            f"{a.state_dir} already holds the identity of {ident.pole_id} (kept; a pole's key "
            "is replaced only with 'replace-controller')",
            file=sys.stderr,
        )
        if ident.pole_id != a.pole_id:
            return 1
    print(json.dumps(ident.public_record(), indent=2))
    return 0


def _identity_show(a: argparse.Namespace) -> int:
    print(json.dumps(load_identity(a.state_dir).public_record(), indent=2))
    return 0


def _identity_rotate(a: argparse.Namespace) -> int:
    from edge.rotation import ANNOUNCEMENT, rotate

    old = load_identity(a.state_dir)
    new = rotate(a.state_dir)
    print(json.dumps({**new.public_record(), "previous_kid": old.kid.hex()}, indent=2))
    print(
        f"announcement signed by the old key: {a.state_dir / ANNOUNCEMENT}; the daemon sends "
        "it on its next start, and verifiers with a trust list accept the new key",
        file=sys.stderr,
    )
    return 0


def _trust_add(a: argparse.Namespace) -> int:
    if a.state_dir:
        rec = json.loads((a.state_dir / PUB_FILE).read_text())
        pole_id, pub = rec["pole_id"], rec["public_key"]
    elif a.pole_id and a.public_key:
        pole_id, pub = a.pole_id, a.public_key
    else:
        print(
            "pole-admin trust add: give --state-dir, or --pole-id with --public-key",
            file=sys.stderr,
        )
        return 2
    with TrustList(a.db) as tl:
        r = tl.add(pole_id, bytes.fromhex(pub), note=a.note)
    print(f"registered {r.pole_id}: kid {r.kid.hex()}")
    return 0


def _trust_revoke(a: argparse.Namespace) -> int:
    if not (a.pole_id or a.kid):
        print("pole-admin trust revoke: give --kid KID or --pole-id ID", file=sys.stderr)
        return 2
    with TrustList(a.db) as tl:
        records = tl.records()
        pole = a.pole_id or next((r.pole_id for r in records if r.kid.hex() == a.kid), None)
        start = [a.kid] if a.kid else [r.kid.hex() for r in records if r.pole_id == pole]
        later = tl.rotated_from_keys(start) if a.compromised else []
        n = tl.revoke(pole_id=a.pole_id, kid=a.kid, compromised=a.compromised)
        left = len(tl.active_keys(pole)) if pole else 0
    print(f"revoked {n} key(s); export the trust list again so verifiers see it")
    if a.compromised:
        print(
            f"{len(later)} key(s) rotated from it (directly or in turn) revoked with it: "
            "whoever holds a stolen key may have announced them"
            + (f" ({', '.join(later)})" if later else "")
        )
    if a.compromised and pole and not left:
        print(
            f"pole {pole} has no active key left: give its controller a new key "
            f"('pole-admin replace-controller {pole} ...', or wipe it and provision again)",
            file=sys.stderr,
        )
    return 0 if n else 1


def _trust_list(a: argparse.Namespace) -> int:
    with TrustList(a.db) as tl:
        for r in tl.records():
            print(f"{r.pole_id:<20} {r.kid.hex()}  {r.status}")
        for name, kid, status in tl.technicians():
            print(f"{'technician ' + name:<20} {kid}  {status}")
        for name, kid, status in tl.operators():
            print(f"{'operator ' + name:<20} {kid}  {status}")
    return 0


def _trust_export(a: argparse.Namespace) -> int:
    with TrustList(a.db) as tl:
        n = tl.export_file(a.out)
        ops = len(tl.operators())
    print(f"wrote {n} keys and {ops} operator keys to {a.out}")
    return 0


def _broker_add(a: argparse.Namespace) -> int:
    auth = BrokerAuth(a.dir, topic_prefix=a.prefix)
    password = auth.add(a.user, reader=a.reader)
    write_secret(a.password_out, password + "\n")
    role = "reader of every pole" if a.reader else f"writer of {a.prefix}/{a.user}/#"
    print(f"{a.user}: {role}; password written to {a.password_out} (mode 0600).")
    print(f"Reload Mosquitto with these lines in its config:\n{auth.mosquitto_config()}", end="")
    return 0


def _broker_remove(a: argparse.Namespace) -> int:
    found = BrokerAuth(a.dir, topic_prefix=a.prefix).remove(a.user)
    print(f"{a.user}: {'removed' if found else 'was not there'}; reload Mosquitto")
    return 0 if found else 1


def _audit(a: argparse.Namespace) -> int:
    from edge.config import PoleConfig, PrivacyConfig, load_config
    from edge.descriptors import load_board, load_sensor
    from edge.manifest import NEVER, output_schema, schema_hash

    if a.config:
        cfg = load_config(a.config)
        sensors = [(s.name, load_sensor(s.model, cfg.hardware_dir)) for s in cfg.sensors]
        privacy, prefix = cfg.privacy, cfg.mqtt.topic_prefix
    else:
        board = load_board(a.board)
        # Everything the board's sensors could publish: a personal-data sensor on the board
        # is audited as if its legal basis were given (a pole refuses it without one).
        cfg = PoleConfig(
            {
                "pole_id": "audit",
                "sensors": board["sensors"],
                "privacy": {"legal_basis": "audit only: a pole states its own"},
            }
        )
        sensors = [(s.name, load_sensor(s.model)) for s in cfg.sensors]
        privacy, prefix = PrivacyConfig({"unique_devices": a.unique_devices}), "poles"
    schema = output_schema(sensors, privacy)
    if a.json:
        print(json.dumps({"schema_sha256": schema_hash(schema), "kinds": schema}, indent=2))
        return 0
    for kind, rows in schema.items():
        print(kind if kind == NEVER else f"{kind}  (MQTT topic {prefix}/<pole>/{kind})")
        for r in rows:
            when = f"  [when {r['when']}]" if r.get("when") else ""
            print(
                f"  {r['record'] or '-':<42} {r['unit'] or '':<8} {r['class']:<9} "
                f"{r['source']}{when}"
            )
    print(f"\nschema sha256 {schema_hash(schema)} (also in every pole's signed manifest)")
    return 0


def _verify(a: argparse.Namespace) -> int:
    from provisioning.receiver import BrokerLogin, Store, TrustWatch, run_receiver, verify_files
    from provisioning.report import format_verdict
    from provisioning.verifier import Verifier

    if not (a.broker or a.files) or (a.broker and a.files):
        print("pole-admin verify: give --broker mqtt://HOST:PORT or --files DIR", file=sys.stderr)
        return 2
    trust = TrustList(a.trust) if a.trust.suffix != ".json" else None  # rotations persist
    store = Store(a.store) if a.store else None
    verifier = Verifier(
        load_keys(a.trust),
        topic_prefix=a.prefix,
        max_skew_s=a.max_skew,
        trust=trust,
        history=store.history if store else None,
        window=a.replay_window,
    )

    def show(topic: str, v: object) -> None:
        line = format_verdict(topic, v)
        if line:
            print(line, flush=True)

    if a.files:
        n = verify_files(a.files, verifier, show, store)
        print(json.dumps(dict(verifier.counts)), file=sys.stderr)
        rejected = sum(c for k, c in verifier.counts.items() if k.startswith("rejected"))
        return 0 if n and not rejected else 1

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # The trust list is reloaded when it changes, and at once on SIGHUP: a revoked
        # key is refused from its next message on, without a restart.
        watch = TrustWatch(a.trust, verifier)
        loop.add_signal_handler(signal.SIGHUP, watch.poke)
        watcher = asyncio.create_task(watch.run(stop))

        if a.duration:
            loop.call_later(a.duration, stop.set)
        password = read_private(a.password_file).decode().strip() if a.password_file else None
        login = BrokerLogin(a.username, password, str(a.ca_file) if a.ca_file else None)
        await run_receiver(
            a.broker,
            verifier,
            show,
            stop,
            store=store,
            share_group=a.share,
            login=login,
            client_id=a.client_id,
        )
        await watcher

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())
    print(json.dumps(dict(verifier.counts)), file=sys.stderr)
    return 0


# -- the technician at the pole ----------------------------------------------------------
def _plan(a: argparse.Namespace, replace: bool, pole_id: str):
    from provisioning.provision import Plan
    from provisioning.registration import TechnicianKey

    tech = TechnicianKey.load(a.technician_key) if a.technician_key else None
    return Plan(
        pole_id=pole_id,
        lat=a.lat,
        lon=a.lon,
        board=a.board,
        broker_url=a.broker_url,
        label_dir=a.label_dir,
        trust_db=a.trust_db,
        broker_dir=a.broker_dir,
        offline_dir=a.offline,
        technician=tech,
        topic_prefix=a.prefix,
        window_s=a.window_s,
        ca_file=a.ca_file,
        replace=replace,
        operators_source=a.operators,
        authoriser=_authoriser(a),
        new_password=getattr(a, "new_password", False),
        public_url=getattr(a, "public_url", None),
    )


def _authoriser(a: argparse.Namespace):
    """The city's authorisation for commands to a finished pole, if the technician has
    one: an operator key here, or a token file made by the city."""
    from provisioning.operator import Authorisation, Authoriser, OperatorKey

    key = OperatorKey.load(a.operator_key) if a.operator_key else None
    token = Authorisation.read(a.authorisation) if a.authorisation else None
    return Authoriser(key, token)


def _provision(a: argparse.Namespace, replace: bool = False) -> int:
    from provisioning.console_client import ConsoleClient
    from provisioning.provision import Provisioner

    pole_id = a.pole if replace else a.pole_id
    plan = _plan(a, replace, pole_id)
    with ConsoleClient(a.port, baud=a.baud, timeout_s=a.timeout) as client:
        Provisioner(client, plan, say=lambda m: print(m, flush=True)).run()
    nxt = (
        f"pole-admin trust sync {a.offline} --db trust.sqlite --broker-dir DIR (at the office)"
        if a.offline
        else "reload Mosquitto (pole-sim city does it by itself), then: "
        f"pole-admin commission {pole_id} --broker {a.broker_url} --trust {a.trust_db} "
        "--username READER --password-file FILE"
    )
    print(f"done. Next: {nxt}")
    return 0


def _replace_controller(a: argparse.Namespace) -> int:
    return _provision(a, replace=True)


def _decommission(a: argparse.Namespace) -> int:
    from provisioning.console_client import ConsoleClient
    from provisioning.provision import decommission

    if not (a.trust_db or a.broker_dir or a.port):
        print(
            "pole-admin decommission: give --trust-db, --broker-dir and/or --port", file=sys.stderr
        )
        return 2
    authoriser = _authoriser(a)
    client = ConsoleClient(a.port, baud=a.baud) if a.port else None
    try:
        decommission(
            a.pole, a.trust_db, a.broker_dir, client, topic_prefix=a.prefix, authoriser=authoriser
        )
    finally:
        if client:
            client.close()
    return 0


def _commission(a: argparse.Namespace) -> int:
    from provisioning.commission import commission
    from provisioning.receiver import BrokerLogin
    from provisioning.verifier import Verifier

    keys = load_keys(a.trust)
    active = [k for k in keys.values() if k.pole_id == a.pole and k.active]
    if not active:  # nothing it sends could verify: say so now, not after the timeout
        known = any(k.pole_id == a.pole for k in keys.values())
        print(
            f"pole-admin commission: {a.pole} has "
            + ("only revoked keys" if known else "no key")
            + f" in {a.trust}, so nothing it sends can verify. Provision it first "
            "(pole-admin provision), or sync its offline registration (pole-admin trust "
            "sync) and export the trust list again; check the pole number.",
            file=sys.stderr,
        )
        return 2
    verifier = Verifier(keys, topic_prefix=a.prefix)
    password = read_private(a.password_file).decode().strip() if a.password_file else None
    login = BrokerLogin(a.username, password, str(a.ca_file) if a.ca_file else None)
    print(f"waiting for signed messages from {a.pole} (up to {a.timeout:g} s) ...", flush=True)
    job = asyncio.run(
        commission(
            a.pole,
            a.broker,
            verifier,
            login,
            timeout_s=a.timeout,
            tilt_max_deg=a.tilt_max,
            max_age_s=a.max_age,
        )
    )
    print(job.report(), end="")
    label = a.label_dir / f"{a.pole}.svg" if a.label_dir else None
    svg = None
    if label is not None and label.is_file() and not label.is_symlink():
        text = label.read_text(errors="replace")
        svg = text[text.find("<svg") :] if "<svg" in text else None  # inline, no XML header
    path = job.save(a.out_dir, svg)
    print(f"saved {path} (and .json, .html)")
    return 0 if job.passed() else 1


def _label(a: argparse.Namespace) -> int:
    from provisioning.label import write_label

    if a.state_dir:
        rec = json.loads((a.state_dir / PUB_FILE).read_text())
        pole_id, fp = rec["pole_id"], rec["fingerprint"]
    elif a.pole_id and a.fingerprint:
        pole_id, fp = a.pole_id, a.fingerprint
    else:
        print(
            "pole-admin label: give --state-dir, or --pole-id with --fingerprint", file=sys.stderr
        )
        return 2
    png, svg = write_label(a.out_dir, pole_id, fp, a.lat, a.lon, a.public_url)
    print(f"wrote {png} and {svg}")
    return 0


def _technician_create(a: argparse.Namespace) -> int:
    from provisioning.registration import TechnicianKey

    try:
        key = TechnicianKey.create(a.dir, a.name)
    except FileExistsError:
        print(f"{a.dir} already holds a technician key (kept)", file=sys.stderr)
        key = TechnicianKey.load(a.dir)
    print(json.dumps(key.public_record(), indent=2))
    print(
        "Ask the city to enrol it: pole-admin trust add-technician --db trust.sqlite "
        f"--name {key.name} --public-key {key.public_key.hex()}",
        file=sys.stderr,
    )
    return 0


def _trust_add_technician(a: argparse.Namespace) -> int:
    if not a.db.exists():
        print(f"note: {a.db} did not exist; created a new, empty trust list", file=sys.stderr)
    with TrustList(a.db) as tl:
        kid = tl.add_technician(a.name, bytes.fromhex(a.public_key))
    print(f"technician {a.name} enrolled: kid {kid}; their offline registrations are accepted")
    return 0


def _trust_revoke_technician(a: argparse.Namespace) -> int:
    with TrustList(a.db) as tl:
        n = tl.revoke_technician(name=a.name, kid=a.kid)
    print(f"revoked {n} key(s) of technician {a.name or a.kid}")
    return 0 if n else 1


def _trust_add_operator(a: argparse.Namespace) -> int:
    from provisioning.operator import read_public_record

    if bool(a.public_key) == bool(a.key_dir):
        print(
            "pole-admin trust add-operator: give --public-key HEX or --key-dir DIR", file=sys.stderr
        )
        return 2
    if a.key_dir:  # only the public record is read; the private key stays where it is
        rec = read_public_record(a.key_dir)
        if rec["operator"] != a.name:
            raise TrustError(
                f"the key in {a.key_dir} was made for operator {rec['operator']}, not {a.name}"
            )
        pub = rec["public_key"]
    else:
        try:
            pub = bytes.fromhex(a.public_key)
        except ValueError:
            raise TrustError(
                "--public-key: 64 hex digits (pole-admin operator create prints them)"
            ) from None
    if not a.db.exists():
        print(f"note: {a.db} did not exist; created a new, empty trust list", file=sys.stderr)
    with TrustList(a.db) as tl:
        kid = tl.add_operator(a.name, pub)
    print(
        f"operator {a.name} enrolled: kid {kid}. Poles provisioned from now on accept its "
        "authorisations; poles finished earlier learn it only through an authorised update "
        "(pole-admin provision ... with --operator-key of a key they know)"
    )
    return 0


def _trust_revoke_operator(a: argparse.Namespace) -> int:
    with TrustList(a.db) as tl:
        n = tl.revoke_operator(a.name)
        left = len(tl.active_operators())
    print(f"revoked {n} key(s) of operator {a.name}; {left} active operator key(s) left")
    if not left:
        print(
            "no operator key is left: no new pole can be finished, and finished poles can "
            "only be changed with a key they already hold; enrol one (pole-admin operator "
            "create, pole-admin trust add-operator)",
            file=sys.stderr,
        )
    if n:
        print(
            "poles already finished still hold it until their operator keys are updated: "
            "re-run 'pole-admin provision' on them with another operator's --operator-key",
            file=sys.stderr,
        )
    return 0 if n else 1


def _operator_create(a: argparse.Namespace) -> int:
    from provisioning.operator import OperatorKey

    try:
        key = OperatorKey.create(a.dir, a.name)
    except FileExistsError:
        print(f"{a.dir} already holds an operator key (kept)", file=sys.stderr)
        key = OperatorKey.load(a.dir)
    print(json.dumps(key.public_record(), indent=2))
    print(
        f"Enrol it in the trust list: pole-admin trust add-operator {key.name} --key-dir "
        f"{a.dir} --db trust.sqlite (or --public-key {key.public_key.hex()})",
        file=sys.stderr,
    )
    return 0


def _operator_authorise(a: argparse.Namespace) -> int:
    from edge.names import check_pole_id
    from provisioning.operator import OperatorKey, check_command, parse_challenge

    key = OperatorKey.load(a.operator_key)
    pole_id = check_pole_id(a.pole)
    command = check_command(a.command)
    token = key.authorise(
        pole_id, command, parse_challenge(a.challenge), valid_s=int(a.valid_for * 60)
    ).hex()
    if a.out:
        from edge.state import atomic_write

        atomic_write(a.out, (token + "\n").encode(), mode=0o600)
        print(
            f"authorisation for {command} on {pole_id} (operator {key.name}, valid "
            f"{a.valid_for:g} min, once) written to {a.out}; the technician runs the command "
            f"again with --authorisation {a.out}",
            file=sys.stderr,
        )
    else:
        print(token)
    return 0


def _trust_sync(a: argparse.Namespace) -> int:
    from provisioning.sync import shown, sync_registrations

    with TrustList(a.db) as tl:
        results = sync_registrations(a.paths, tl, a.broker_dir, topic_prefix=a.prefix)
    bad = 0
    for path, ok, msg in results:
        print(f"{'ok      ' if ok else 'REJECTED'} {shown(path)}: {msg}")
        bad += not ok
    if not results:
        print("no registration files (*.lpreg) found")
    if any(ok for _, ok, _ in results):
        print("export the trust list again (and reload Mosquitto) so the new poles are accepted")
    return 1 if bad else 0


def _positive_s(value: str) -> float:
    try:
        s = float(value)
    except ValueError:
        s = float("nan")
    if not s > 0 or s == float("inf"):
        raise argparse.ArgumentTypeError("a number of seconds above 0")
    return s


def main(argv: list[str] | None = None) -> int:
    from provisioning.commission import DEFAULT_MAX_AGE_S

    ap = argparse.ArgumentParser(
        prog="pole-admin",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="how much to log (default WARNING)",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)

    ident = sub.add_parser("identity", help="the pole's key pair (run on the controller)")
    isub = ident.add_subparsers(dest="sub", required=True)
    c = isub.add_parser("create", help="generate the key here; private key mode 0600, never shown")
    c.add_argument("--state-dir", type=Path, required=True, help="the pole's state directory")
    c.add_argument("--pole-id", type=_pole, required=True, help="e.g. nl-ex-0001")
    c.set_defaults(fn=_identity_create)
    ro = isub.add_parser("rotate", help="new key, announced in a message signed by the old one")
    ro.add_argument("--state-dir", type=Path, required=True, help="the pole's state dir (its key)")
    ro.set_defaults(fn=_identity_rotate)
    s = isub.add_parser("show", help="print pole id, kid, public key and fingerprint")
    s.add_argument("--state-dir", type=Path, required=True, help="the pole's state dir (its key)")
    s.set_defaults(fn=_identity_show)

    def field_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--port", required=True, help="the controller's console, e.g. /dev/ttyUSB0")
        p.add_argument("--baud", type=int, default=115200, help="console speed (default 115200)")
        p.add_argument(
            "--timeout", type=float, default=5.0, help="seconds per console answer (default 5)"
        )
        p.add_argument("--lat", type=float, required=True, help="latitude, WGS84 degrees")
        p.add_argument("--lon", type=float, required=True, help="longitude, WGS84 degrees")
        p.add_argument(
            "--board",
            type=_board,
            default="linux-controller",
            help="board profile: linux-controller (default); sim-pole, sim-pole-full for "
            "the simulator",
        )
        p.add_argument("--broker-url", required=True, help="the broker the pole publishes to")
        p.add_argument("--ca-file", help="CA certificate path on the controller, for mqtts://")
        p.add_argument(
            "--prefix", type=_prefix, default="poles", help="topic prefix (default poles)"
        )
        p.add_argument("--window-s", type=int, help="measurement window (default 60 s)")
        p.add_argument("--label-dir", type=Path, default=Path("labels"), help="default ./labels")
        p.add_argument(
            "--public-url",
            type=_public_url,
            help="the city's public pages, e.g. https://data.city.example/poles: the label's "
            "QR code then opens <URL>/<pole id>?fp=<fingerprint> (default: a plain "
            "lightpole:1 code)",
        )
        p.add_argument(
            "--new-password",
            action="store_true",
            help="give a pole that already has a working broker password a new one (offline: "
            "sync the new registration before the pole restarts, or it cannot connect)",
        )
        online = p.add_argument_group("online (laptop reaches the city's files)")
        online.add_argument("--trust-db", type=Path, help="the city's trust list (SQLite)")
        online.add_argument("--broker-dir", type=Path, help="Mosquitto passwd/acl directory")
        offline = p.add_argument_group("offline (no network at the pole)")
        offline.add_argument(
            "--offline", type=Path, metavar="DIR", help="write a signed registration here"
        )
        offline.add_argument(
            "--technician-key", type=Path, help="your key (pole-admin technician create)"
        )
        offline.add_argument(
            "--operators",
            type=Path,
            metavar="FILE",
            help="the city's operator keys to install: its exported trust.json (or the trust "
            "list); default --trust-db",
        )
        auth_opts(p)

    def auth_opts(p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group(
            "a finished pole (changes need the city's one-time authorisation)"
        ).add_mutually_exclusive_group()
        g.add_argument(
            "--operator-key",
            type=Path,
            metavar="DIR",
            help="a city operator key (pole-admin operator create): signs here",
        )
        g.add_argument(
            "--authorisation",
            type=Path,
            metavar="FILE",
            help="a token from the city (pole-admin operator authorise) for this pole, "
            "command and the challenge the pole showed",
        )

    pv = sub.add_parser(
        "provision",
        help="bring a new controller online over its serial console (resumable)",
        description="Generate the pole's key on the controller, configure it, register it "
        "and print its label. Safe to run again after any interruption: it resumes.",
    )
    pv.add_argument(
        "--pole-id", type=_pole, required=True, help="the number on the mast, e.g. nl-ehv-00042"
    )
    field_opts(pv)
    pv.set_defaults(fn=_provision)
    rc = sub.add_parser(
        "replace-controller",
        help="same pole, new controller: new key, the old one revoked",
        description="Provision a replacement controller under the pole's existing id. The "
        "pole's history stays under its id; the old controller's key is revoked.",
    )
    rc.add_argument("pole", type=_pole, help="the pole id")
    field_opts(rc)
    rc.set_defaults(fn=_replace_controller)
    dc = sub.add_parser(
        "decommission",
        help="retire a pole: revoke keys, remove broker user, wipe the controller",
        description="With --trust-db: revoke every key of the pole. With --broker-dir: remove "
        "its broker user. With --port: destroy the key, credentials and configuration on the "
        "controller (power-cycle it afterwards). Give only --port to wipe a controller "
        "without touching the city's lists.",
    )
    dc.add_argument("pole", type=_pole, help="the pole id")
    dc.add_argument("--trust-db", type=Path, help="revoke the pole's keys here")
    dc.add_argument("--broker-dir", type=Path, help="remove the pole's broker user here")
    dc.add_argument("--port", help="also wipe the controller's key over its console")
    dc.add_argument("--baud", type=int, default=115200, help="console speed (default 115200)")
    dc.add_argument("--prefix", type=_prefix, default="poles", help="topic prefix (default poles)")
    auth_opts(dc)
    dc.set_defaults(fn=_decommission)
    cm = sub.add_parser(
        "commission",
        help="check a pole's signed messages: sensors present and plausible, no alarms",
        description="Waits for the pole's signed messages through the broker and prints a "
        "pass/fail report, also saved as .txt and .json. Exit code 0 only on pass.",
    )
    cm.add_argument("pole", type=_pole, help="the pole id")
    cm.add_argument("--broker", required=True, help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    cm.add_argument("--trust", type=Path, required=True, help="trust.json or trust SQLite file")
    cm.add_argument(
        "--username", type=_user, help="a reader user made by 'pole-admin broker add --reader'"
    )
    cm.add_argument("--password-file", type=Path, help="file holding that reader's password")
    cm.add_argument("--ca-file", type=Path, help="the broker's CA certificate, for mqtts://")
    cm.add_argument("--prefix", type=_prefix, default="poles", help="topic prefix (default poles)")
    cm.add_argument("--timeout", type=float, default=180.0, help="give up after (s), default 180")
    cm.add_argument("--tilt-max", type=float, default=5.0, help="degrees, default 5")
    cm.add_argument(
        "--max-age",
        type=_positive_s,
        default=DEFAULT_MAX_AGE_S,
        metavar="S",
        help="judge only messages sealed within this many seconds of now (by their signed "
        "time, else their arrival), default 600 (10 min): a retained message from an earlier "
        "controller or an old one published again cannot make the pole pass",
    )
    cm.add_argument(
        "--out-dir", type=Path, default=Path("."), help="where the report goes (.txt, .json, .html)"
    )
    cm.add_argument(
        "--label-dir",
        type=Path,
        default=Path("labels"),
        help="put the pole's label (<dir>/<pole>.svg, as provision wrote it) into the HTML "
        "report (default ./labels)",
    )
    cm.set_defaults(fn=_commission)
    lb = sub.add_parser("label", help="print a pole label again (PNG and SVG with a QR code)")
    lb.add_argument("--state-dir", type=Path, help="read id and fingerprint from a state dir")
    lb.add_argument("--pole-id", type=_pole, help="the pole's id, e.g. nl-ehv-00042")
    lb.add_argument("--fingerprint", help="as shown by provision, e.g. ab12:cd34:ef56:7890")
    lb.add_argument("--lat", type=float, required=True, help="latitude, WGS84 degrees")
    lb.add_argument("--lon", type=float, required=True, help="longitude, WGS84 degrees")
    lb.add_argument("--out-dir", type=Path, default=Path("labels"), help="default ./labels")
    lb.add_argument(
        "--public-url",
        type=_public_url,
        help="the city's public pages, e.g. https://data.city.example/poles: the QR code "
        "then opens <URL>/<pole id>?fp=<fingerprint>",
    )
    lb.set_defaults(fn=_label)
    te = sub.add_parser("technician", help="your own key, for offline registrations")
    tesub = te.add_subparsers(dest="sub", required=True)
    tc = tesub.add_parser("create", help="make your key (mode 0600) and print its public half")
    tc.add_argument(
        "--name",
        type=_technician,
        required=True,
        help="your name or staff number: letters, digits and '-', e.g. j-devries",
    )
    tc.add_argument(
        "--dir",
        type=Path,
        default=Path.home() / ".config" / "lightpole",
        help="default ~/.config/lightpole",
    )
    tc.set_defaults(fn=_technician_create)
    op = sub.add_parser(
        "operator",
        help="the city's operator key: authorises changes to finished poles",
        description="An operator key belongs to the city. Its public half is installed on "
        "every pole at provisioning; a finished pole accepts CONFIGURE, CREDENTIALS, "
        "OPERATORS and WIPE over its console only with a one-time authorisation signed by it.",
    )
    opsub = op.add_subparsers(dest="sub", required=True)
    oc = opsub.add_parser("create", help="make an operator key (mode 0600), print its public half")
    oc.add_argument(
        "--name", type=_operator, required=True, help="the operator's name, e.g. city-ops-1"
    )
    oc.add_argument(
        "--dir",
        type=Path,
        default=Path.home() / ".config" / "lightpole",
        help="default ~/.config/lightpole (operator.key, operator.json)",
    )
    oc.set_defaults(fn=_operator_create)
    oa = opsub.add_parser(
        "authorise",
        help="a one-time token for one command on one finished pole",
        description="Signs {pole, command, the pole's challenge, expiry} with the operator "
        "key. The technician reads the challenge from pole-admin's refusal and runs the "
        "command again with --authorisation FILE.",
    )
    oa.add_argument("pole", type=_pole, help="the pole id")
    oa.add_argument("command", help="CONFIGURE, CREDENTIALS, OPERATORS or WIPE")
    oa.add_argument("--challenge", required=True, help="the 32 hex digits the pole handed out")
    oa.add_argument(
        "--operator-key",
        type=Path,
        default=Path.home() / ".config" / "lightpole",
        metavar="DIR",
        help="default ~/.config/lightpole",
    )
    oa.add_argument(
        "--valid-for", type=float, default=15, metavar="MIN", help="minutes (default 15)"
    )
    oa.add_argument("--out", type=Path, help="write the token here (else printed)")
    oa.set_defaults(fn=_operator_authorise)

    trust = sub.add_parser("trust", help="the city's trust list of pole keys")
    tsub = trust.add_subparsers(dest="sub", required=True)
    t = tsub.add_parser("add", help="register a pole's public key")
    t.add_argument("--db", type=Path, required=True, help="trust list SQLite file")
    t.add_argument("--state-dir", type=Path, help="read pole id and key from a pole's state dir")
    t.add_argument("--pole-id", type=_pole, help="the pole's id, e.g. nl-ehv-00042")
    t.add_argument("--public-key", help="32-byte Ed25519 public key, hex")
    t.add_argument("--note", default="", help="why, for the record (shown by trust list)")
    t.set_defaults(fn=_trust_add)
    r = tsub.add_parser(
        "revoke",
        help="revoke a lost, replaced or stolen pole's key",
        description="Revoke one key (--kid) or every key of a pole (--pole-id): every message "
        "under it is rejected from then on (verifiers reading the SQLite file reload it by "
        "themselves; export it again for the others).",
    )
    r.add_argument("--db", type=Path, required=True, help="the trust list (SQLite file)")
    r.add_argument("--pole-id", type=_pole, help="the pole's id, e.g. nl-ehv-00042")
    r.add_argument("--kid", type=_kid, help="16 hex digits, as 'pole-admin trust list' shows")
    r.add_argument(
        "--compromised",
        action="store_true",
        help="the key was stolen (or may have been): also revoke every key rotated from it, "
        "directly or in turn, because whoever holds it may already have announced a key of "
        "their own. Prints how many. The pole then needs a new key (replace-controller)",
    )
    r.set_defaults(fn=_trust_revoke)
    li = tsub.add_parser("list", help="list keys and their status")
    li.add_argument("--db", type=Path, required=True, help="the trust list (SQLite file)")
    li.set_defaults(fn=_trust_list)
    e = tsub.add_parser("export", help="write the JSON trust list for verifiers")
    e.add_argument("--db", type=Path, required=True, help="the trust list (SQLite file)")
    e.add_argument("--out", type=Path, required=True, help="where the JSON trust list goes")
    e.set_defaults(fn=_trust_export)

    sy = tsub.add_parser("sync", help="register offline registrations (*.lpreg) after checks")
    sy.add_argument("paths", type=Path, nargs="+", help="registration files or directories")
    sy.add_argument("--db", type=Path, required=True, help="the trust list (SQLite file)")
    sy.add_argument("--broker-dir", type=Path, help="also install the poles' broker passwords")
    sy.add_argument("--prefix", type=_prefix, default="poles", help="topic prefix (default poles)")
    sy.set_defaults(fn=_trust_sync)
    at = tsub.add_parser("add-technician", help="enrol a technician's key (offline registrations)")
    at.add_argument("--db", type=Path, required=True, help="the trust list (SQLite file)")
    at.add_argument(
        "--name", type=_technician, required=True, help="the technician's name (letters, digits, -)"
    )
    at.add_argument("--public-key", required=True, help="hex, from 'pole-admin technician create'")
    at.set_defaults(fn=_trust_add_technician)
    rt = tsub.add_parser("revoke-technician", help="stop accepting a technician's registrations")
    rt.add_argument("--db", type=Path, required=True, help="the trust list (SQLite file)")
    who = rt.add_mutually_exclusive_group(required=True)
    who.add_argument("--name", type=_technician, help="every key of this technician")
    who.add_argument(
        "--kid", type=_kid, help="one key, as 'pole-admin trust list' shows it (any name)"
    )
    rt.set_defaults(fn=_trust_revoke_technician)
    ao = tsub.add_parser(
        "add-operator", help="enrol a city operator key (installed on poles at provisioning)"
    )
    ao.add_argument("name", type=_operator, help="the operator's name")
    ao.add_argument("--db", type=Path, required=True, help="the trust list (SQLite file)")
    src_op = ao.add_mutually_exclusive_group()
    src_op.add_argument("--public-key", help="hex, from 'pole-admin operator create'")
    src_op.add_argument("--key-dir", type=Path, help="read it from the key's directory")
    ao.set_defaults(fn=_trust_add_operator)
    ro2 = tsub.add_parser("revoke-operator", help="withdraw a city operator key")
    ro2.add_argument("name", type=_operator, help="the operator's name")
    ro2.add_argument("--db", type=Path, required=True, help="the trust list (SQLite file)")
    ro2.set_defaults(fn=_trust_revoke_operator)

    b = sub.add_parser("broker", help="Mosquitto credentials and ACLs for poles and verifiers")
    bsub = b.add_subparsers(dest="sub", required=True)
    ba = bsub.add_parser("add", help="create or reset a broker user (a pole, or --reader)")
    ba.add_argument("--dir", type=Path, required=True, help="where passwd and acl live")
    ba.add_argument("--user", type=_user, required=True, help="the pole id, or a verifier's name")
    ba.add_argument("--reader", action="store_true", help="may read every pole's topics")
    ba.add_argument(
        "--password-out",
        type=Path,
        required=True,
        help="write the new password here (mode 0600), e.g. the pole's state dir",
    )
    ba.add_argument("--prefix", type=_prefix, default="poles", help="topic prefix (default poles)")
    ba.set_defaults(fn=_broker_add)
    br = bsub.add_parser("remove", help="remove a broker user")
    br.add_argument("--dir", type=Path, required=True, help="the broker's passwd/acl directory")
    br.add_argument("--user", type=_user, required=True, help="the account to remove")
    br.add_argument("--prefix", type=_prefix, default="poles", help="topic prefix (default poles)")
    br.set_defaults(fn=_broker_remove)

    au = sub.add_parser("audit", help="every topic and field this gateway can publish")
    src = au.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", type=Path, help="a pole's TOML file")
    src.add_argument("--board", type=_board, help="a board profile from hardware/boards/")
    au.add_argument(
        "--unique-devices",
        action="store_true",
        help="with --board: as if unique-device counting were enabled",
    )
    au.add_argument("--json", action="store_true", help="machine-readable output")
    au.set_defaults(fn=_audit)

    v = sub.add_parser(
        "verify",
        help="subscribe (or read a file drop), verify and print what poles publish",
        description="Verify every message against the trust list, which is reloaded when it "
        "changes (and on SIGHUP). With --store, verified messages are kept once each with "
        "their signed bytes, and replay state survives a restart.",
    )
    v.add_argument("--broker", help="mqtt://HOST:PORT")
    v.add_argument(
        "--files", type=Path, help='verify a file drop (transport = "file") instead: its folder'
    )
    v.add_argument("--trust", type=Path, required=True, help="trust.json or trust SQLite file")
    v.add_argument("--store", type=Path, help="store verified messages (once each) in SQLite")
    v.add_argument(
        "--replay-window",
        type=int,
        default=512,
        help="recent counters remembered per key; older ones are replays (default 512)",
    )
    v.add_argument("--prefix", type=_prefix, default="poles", help="topic prefix (default poles)")
    v.add_argument("--share", help="shared-subscription group, to run several verifiers")
    v.add_argument("--max-skew", type=float, help="reject iat further than this from now (s)")
    v.add_argument("--duration", type=float, help="stop after this many seconds")
    v.add_argument(
        "--username", type=_user, help="broker user (a reader made by 'pole-admin broker add')"
    )
    v.add_argument("--password-file", type=Path, help="file holding that user's password")
    v.add_argument("--ca-file", type=Path, help="CA certificate for mqtts:// brokers")
    v.add_argument(
        "--client-id",
        help="persistent session: the broker keeps messages while the verifier is away",
    )
    v.set_defaults(fn=_verify)

    a = ap.parse_args(argv)
    logging.basicConfig(level=a.log_level.upper())
    try:
        return a.fn(a)
    except ProvisionError as exc:
        print(f"pole-admin: error: {exc.message}", file=sys.stderr)
        if exc.next_step:
            print(f"  what to do: {exc.next_step}", file=sys.stderr)
        return 2
    except (TrustError, FileNotFoundError, PermissionError, ValueError) as exc:
        print(f"pole-admin: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

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

from edge.state import PUB_FILE, create_identity, load_identity
from provisioning.broker_auth import BrokerAuth, write_secret
from provisioning.console_client import ProvisionError
from provisioning.trustlist import TrustError, TrustList, load_keys


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
    tl = TrustList(a.db)
    try:
        r = tl.add(pole_id, bytes.fromhex(pub), note=a.note)
    finally:
        tl.close()
    print(f"registered {r.pole_id}: kid {r.kid.hex()}")
    return 0


def _trust_revoke(a: argparse.Namespace) -> int:
    tl = TrustList(a.db)
    try:
        n = tl.revoke(pole_id=a.pole_id, kid=a.kid)
    finally:
        tl.close()
    print(f"revoked {n} key(s); export the trust list again so verifiers see it")
    return 0 if n else 1


def _trust_list(a: argparse.Namespace) -> int:
    tl = TrustList(a.db)
    try:
        for r in tl.records():
            print(f"{r.pole_id:<20} {r.kid.hex()}  {r.status}")
        for name, kid, status in tl.technicians():
            print(f"{'technician ' + name:<20} {kid}  {status}")
    finally:
        tl.close()
    return 0


def _trust_export(a: argparse.Namespace) -> int:
    tl = TrustList(a.db)
    try:
        n = tl.export_file(a.out)
    finally:
        tl.close()
    print(f"wrote {n} keys to {a.out}")
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
    from edge.manifest import output_schema, schema_hash

    if a.config:
        cfg = load_config(a.config)
        sensors = [(s.name, load_sensor(s.model, cfg.hardware_dir)) for s in cfg.sensors]
        privacy, prefix = cfg.privacy, cfg.mqtt.topic_prefix
    else:
        board = load_board(a.board)
        cfg = PoleConfig({"pole_id": "audit", "sensors": board["sensors"]})
        sensors = [(s.name, load_sensor(s.model)) for s in cfg.sensors]
        privacy, prefix = PrivacyConfig({"unique_devices": a.unique_devices}), "poles"
    schema = output_schema(sensors, privacy, prefix)
    if a.json:
        print(json.dumps({"schema_sha256": schema_hash(schema), "topics": schema}, indent=2))
        return 0
    for topic, rows in schema.items():
        print(topic)
        for r in rows:
            print(f"  {r['record'] or '-':<42} {r['unit'] or '':<8} {r['class']:<9} {r['source']}")
    print(f"\nschema sha256 {schema_hash(schema)} (also in every pole's signed manifest)")
    return 0


def _verify(a: argparse.Namespace) -> int:
    from provisioning.receiver import BrokerLogin, Store, run_receiver
    from provisioning.report import format_verdict
    from provisioning.verifier import Verifier

    trust = TrustList(a.trust) if a.trust.suffix != ".json" else None  # rotations persist
    verifier = Verifier(
        load_keys(a.trust), topic_prefix=a.prefix, max_skew_s=a.max_skew, trust=trust
    )
    store = Store(a.store) if a.store else None

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def show(topic: str, v: object) -> None:
            line = format_verdict(topic, v)
            if line:
                print(line, flush=True)

        if a.duration:
            loop.call_later(a.duration, stop.set)
        password = a.password_file.read_text().strip() if a.password_file else None
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
    )


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
    client = ConsoleClient(a.port, baud=a.baud) if a.port else None
    try:
        decommission(a.pole, a.trust_db, a.broker_dir, client, topic_prefix=a.prefix)
    finally:
        if client:
            client.close()
    return 0


def _commission(a: argparse.Namespace) -> int:
    from provisioning.commission import commission
    from provisioning.receiver import BrokerLogin
    from provisioning.verifier import Verifier

    verifier = Verifier(load_keys(a.trust), topic_prefix=a.prefix)
    password = a.password_file.read_text().strip() if a.password_file else None
    login = BrokerLogin(a.username, password, str(a.ca_file) if a.ca_file else None)
    print(f"waiting for signed messages from {a.pole} (up to {a.timeout:g} s) ...", flush=True)
    job = asyncio.run(
        commission(a.pole, a.broker, verifier, login, timeout_s=a.timeout, tilt_max_deg=a.tilt_max)
    )
    print(job.report(), end="")
    path = job.save(a.out_dir)
    print(f"saved {path} (and .json)")
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
    png, svg = write_label(a.out_dir, pole_id, fp, a.lat, a.lon)
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
    tl = TrustList(a.db)
    try:
        kid = tl.add_technician(a.name, bytes.fromhex(a.public_key))
    finally:
        tl.close()
    print(f"technician {a.name} enrolled: kid {kid}; their offline registrations are accepted")
    return 0


def _trust_revoke_technician(a: argparse.Namespace) -> int:
    tl = TrustList(a.db)
    try:
        n = tl.revoke_technician(a.name)
    finally:
        tl.close()
    print(f"revoked {n} key(s) of technician {a.name}")
    return 0 if n else 1


def _trust_sync(a: argparse.Namespace) -> int:
    from provisioning.sync import sync_registrations

    tl = TrustList(a.db)
    try:
        results = sync_registrations(a.paths, tl, a.broker_dir, topic_prefix=a.prefix)
    finally:
        tl.close()
    bad = 0
    for path, ok, msg in results:
        print(f"{'ok      ' if ok else 'REJECTED'} {path.name}: {msg}")
        bad += not ok
    if not results:
        print("no registration files (*.lpreg) found")
    if any(ok for _, ok, _ in results):
        print("export the trust list again (and reload Mosquitto) so the new poles are accepted")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="pole-admin",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--log-level", default="WARNING")
    sub = ap.add_subparsers(dest="cmd", required=True)

    ident = sub.add_parser("identity", help="the pole's key pair (run on the controller)")
    isub = ident.add_subparsers(dest="sub", required=True)
    c = isub.add_parser("create", help="generate the key here; private key mode 0600, never shown")
    c.add_argument("--state-dir", type=Path, required=True, help="the pole's state directory")
    c.add_argument("--pole-id", required=True, help="e.g. nl-ex-0001")
    c.set_defaults(fn=_identity_create)
    ro = isub.add_parser("rotate", help="new key, announced in a message signed by the old one")
    ro.add_argument("--state-dir", type=Path, required=True)
    ro.set_defaults(fn=_identity_rotate)
    s = isub.add_parser("show", help="print pole id, kid, public key and fingerprint")
    s.add_argument("--state-dir", type=Path, required=True)
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
            default="linux-controller",
            help="board profile: linux-controller (default); sim-pole, sim-pole-full for "
            "the simulator",
        )
        p.add_argument("--broker-url", required=True, help="the broker the pole publishes to")
        p.add_argument("--ca-file", help="CA certificate path on the controller, for mqtts://")
        p.add_argument("--prefix", default="poles", help="topic prefix (default poles)")
        p.add_argument("--window-s", type=int, help="measurement window (default 60 s)")
        p.add_argument("--label-dir", type=Path, default=Path("labels"), help="default ./labels")
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

    pv = sub.add_parser(
        "provision",
        help="bring a new controller online over its serial console (resumable)",
        description="Generate the pole's key on the controller, configure it, register it "
        "and print its label. Safe to run again after any interruption: it resumes.",
    )
    pv.add_argument("--pole-id", required=True, help="the number on the mast, e.g. nl-ehv-00042")
    field_opts(pv)
    pv.set_defaults(fn=_provision)
    rc = sub.add_parser(
        "replace-controller",
        help="same pole, new controller: new key, the old one revoked",
        description="Provision a replacement controller under the pole's existing id. The "
        "pole's history stays under its id; the old controller's key is revoked.",
    )
    rc.add_argument("pole", help="the pole id")
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
    dc.add_argument("pole", help="the pole id")
    dc.add_argument("--trust-db", type=Path, help="revoke the pole's keys here")
    dc.add_argument("--broker-dir", type=Path, help="remove the pole's broker user here")
    dc.add_argument("--port", help="also wipe the controller's key over its console")
    dc.add_argument("--baud", type=int, default=115200)
    dc.add_argument("--prefix", default="poles")
    dc.set_defaults(fn=_decommission)
    cm = sub.add_parser(
        "commission",
        help="check a pole's signed messages: sensors present and plausible, no alarms",
        description="Waits for the pole's signed messages through the broker and prints a "
        "pass/fail report, also saved as .txt and .json. Exit code 0 only on pass.",
    )
    cm.add_argument("pole", help="the pole id")
    cm.add_argument("--broker", required=True, help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    cm.add_argument("--trust", type=Path, required=True, help="trust.json or trust SQLite file")
    cm.add_argument("--username", help="a reader user made by 'pole-admin broker add --reader'")
    cm.add_argument("--password-file", type=Path, help="file holding that reader's password")
    cm.add_argument("--ca-file", type=Path, help="the broker's CA certificate, for mqtts://")
    cm.add_argument("--prefix", default="poles")
    cm.add_argument("--timeout", type=float, default=180.0, help="give up after (s), default 180")
    cm.add_argument("--tilt-max", type=float, default=5.0, help="degrees, default 5")
    cm.add_argument("--out-dir", type=Path, default=Path("."), help="where the report goes")
    cm.set_defaults(fn=_commission)
    lb = sub.add_parser("label", help="print a pole label again (PNG and SVG with a QR code)")
    lb.add_argument("--state-dir", type=Path, help="read id and fingerprint from a state dir")
    lb.add_argument("--pole-id")
    lb.add_argument("--fingerprint", help="as shown by provision, e.g. ab12:cd34:ef56:7890")
    lb.add_argument("--lat", type=float, required=True)
    lb.add_argument("--lon", type=float, required=True)
    lb.add_argument("--out-dir", type=Path, default=Path("labels"))
    lb.set_defaults(fn=_label)
    te = sub.add_parser("technician", help="your own key, for offline registrations")
    tesub = te.add_subparsers(dest="sub", required=True)
    tc = tesub.add_parser("create", help="make your key (mode 0600) and print its public half")
    tc.add_argument("--name", required=True, help="your name or staff number")
    tc.add_argument(
        "--dir",
        type=Path,
        default=Path.home() / ".config" / "lightpole",
        help="default ~/.config/lightpole",
    )
    tc.set_defaults(fn=_technician_create)

    trust = sub.add_parser("trust", help="the city's trust list of pole keys")
    tsub = trust.add_subparsers(dest="sub", required=True)
    t = tsub.add_parser("add", help="register a pole's public key")
    t.add_argument("--db", type=Path, required=True, help="trust list SQLite file")
    t.add_argument("--state-dir", type=Path, help="read pole id and key from a pole's state dir")
    t.add_argument("--pole-id")
    t.add_argument("--public-key", help="32-byte Ed25519 public key, hex")
    t.add_argument("--note", default="")
    t.set_defaults(fn=_trust_add)
    r = tsub.add_parser("revoke", help="revoke a lost or replaced pole's key")
    r.add_argument("--db", type=Path, required=True)
    r.add_argument("--pole-id")
    r.add_argument("--kid")
    r.set_defaults(fn=_trust_revoke)
    li = tsub.add_parser("list", help="list keys and their status")
    li.add_argument("--db", type=Path, required=True)
    li.set_defaults(fn=_trust_list)
    e = tsub.add_parser("export", help="write the JSON trust list for verifiers")
    e.add_argument("--db", type=Path, required=True)
    e.add_argument("--out", type=Path, required=True)
    e.set_defaults(fn=_trust_export)

    sy = tsub.add_parser("sync", help="register offline registrations (*.lpreg) after checks")
    sy.add_argument("paths", type=Path, nargs="+", help="registration files or directories")
    sy.add_argument("--db", type=Path, required=True)
    sy.add_argument("--broker-dir", type=Path, help="also install the poles' broker passwords")
    sy.add_argument("--prefix", default="poles")
    sy.set_defaults(fn=_trust_sync)
    at = tsub.add_parser("add-technician", help="enrol a technician's key (offline registrations)")
    at.add_argument("--db", type=Path, required=True)
    at.add_argument("--name", required=True)
    at.add_argument("--public-key", required=True, help="hex, from 'pole-admin technician create'")
    at.set_defaults(fn=_trust_add_technician)
    rt = tsub.add_parser("revoke-technician", help="stop accepting a technician's registrations")
    rt.add_argument("--db", type=Path, required=True)
    rt.add_argument("--name", required=True)
    rt.set_defaults(fn=_trust_revoke_technician)

    b = sub.add_parser("broker", help="Mosquitto credentials and ACLs for poles and verifiers")
    bsub = b.add_subparsers(dest="sub", required=True)
    ba = bsub.add_parser("add", help="create or reset a broker user (a pole, or --reader)")
    ba.add_argument("--dir", type=Path, required=True, help="where passwd and acl live")
    ba.add_argument("--user", required=True, help="the pole id, or a verifier's name")
    ba.add_argument("--reader", action="store_true", help="may read every pole's topics")
    ba.add_argument(
        "--password-out",
        type=Path,
        required=True,
        help="write the new password here (mode 0600), e.g. the pole's state dir",
    )
    ba.add_argument("--prefix", default="poles")
    ba.set_defaults(fn=_broker_add)
    br = bsub.add_parser("remove", help="remove a broker user")
    br.add_argument("--dir", type=Path, required=True)
    br.add_argument("--user", required=True)
    br.add_argument("--prefix", default="poles")
    br.set_defaults(fn=_broker_remove)

    au = sub.add_parser("audit", help="every topic and field this gateway can publish")
    src = au.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", type=Path, help="a pole's TOML file")
    src.add_argument("--board", help="a board profile from hardware/boards/")
    au.add_argument(
        "--unique-devices",
        action="store_true",
        help="with --board: as if unique-device counting were enabled",
    )
    au.add_argument("--json", action="store_true")
    au.set_defaults(fn=_audit)

    v = sub.add_parser("verify", help="subscribe, verify and print what poles publish")
    v.add_argument("--broker", required=True, help="mqtt://HOST:PORT")
    v.add_argument("--trust", type=Path, required=True, help="trust.json or trust SQLite file")
    v.add_argument("--store", type=Path, help="store verified messages (once each) in SQLite")
    v.add_argument("--prefix", default="poles")
    v.add_argument("--share", help="shared-subscription group, to run several verifiers")
    v.add_argument("--max-skew", type=float, help="reject iat further than this from now (s)")
    v.add_argument("--duration", type=float, help="stop after this many seconds")
    v.add_argument("--username", help="broker user (a reader made by 'pole-admin broker add')")
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

"""``pole-admin``: tools for field technicians and the city.

pole-admin identity create --state-dir DIR --pole-id ID   (on the pole controller)
pole-admin identity show   --state-dir DIR
pole-admin trust add       --db trust.sqlite --state-dir DIR | --pole-id ID --public-key HEX
pole-admin trust revoke    --db trust.sqlite --pole-id ID | --kid KID
pole-admin trust list      --db trust.sqlite
pole-admin trust export    --db trust.sqlite --out trust.json
pole-admin verify          --broker mqtt://HOST:PORT --trust trust.json [--store msgs.sqlite]
"""

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
    except (TrustError, FileNotFoundError, PermissionError, ValueError) as exc:
        print(f"pole-admin: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

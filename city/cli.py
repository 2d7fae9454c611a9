"""``python -m city.cli``: the city's ingest service and the questions asked of its store.

Commands: ``ingest`` (the service), ``migrate`` and ``maintain`` (what ``ingest`` also
does at start and hourly, for a database administrator's own schedule), ``keys-sync``
(trust list file <-> store, for a machine that runs no ingest), ``latest``, ``alarms``,
``hourly`` (the queries of city/queries.py), ``export`` (raw signed messages as JSON
lines, for anyone to re-verify: tests/interop/pycose_verify.py reads them), and ``serve``
(the SensorThings and NGSI-LD APIs, the live map and the public pages: city/web/).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
from pathlib import Path

from city import queries
from city.store import StoreUnavailable, open_store

DEFAULT_DB = "sqlite:///city.sqlite"


def _db_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        default=DEFAULT_DB,
        help="the store: postgresql://USER@HOST/DB (PostgreSQL with PostGIS) or "
        f"sqlite:///PATH (one file, no set-up); default {DEFAULT_DB}",
    )


def _when(text: str) -> dt.datetime:
    """An ISO 8601 time (UTC when no offset is given) or "-3h" / "-2d" from now."""
    if text.startswith("-") and text[-1] in "hd" and text[1:-1].isdigit():
        hours = int(text[1:-1]) * (24 if text[-1] == "d" else 1)
        return dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)
    t = dt.datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m city.cli", description=__doc__.split("\n\n")[0])
    ap.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = ap.add_subparsers(dest="cmd", required=True)

    ing = sub.add_parser("ingest", help="run N verifier workers on a shared subscription")
    _db_arg(ing)
    ing.add_argument("--broker", required=True, help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    ing.add_argument("--workers", type=int, default=2, help="worker processes (one core each)")
    ing.add_argument(
        "--first-worker",
        type=int,
        default=1,
        help="number of this machine's first worker, so that machines use distinct reader "
        "accounts and sessions (machine 2 of 2 with 4 workers each: --first-worker 5)",
    )
    ing.add_argument(
        "--reader-base",
        default="city-ingest",
        help="worker N logs in (and keeps its session) as <reader-base>-N: make each "
        "account with 'pole-admin broker add --reader --user <reader-base>-N "
        "--password-out <password-dir>/<reader-base>-N'",
    )
    ing.add_argument(
        "--password-dir",
        help="folder holding each reader's password in a 0600 file named <reader-base>-N "
        "(without it, workers connect anonymously)",
    )
    ing.add_argument("--ca-file", help="CA certificate to trust for mqtts://")
    ing.add_argument("--group", default="city-ingest", help="shared subscription group name")
    ing.add_argument("--prefix", default="poles", help="topic prefix: <prefix>/<pole>/<kind>")
    ing.add_argument(
        "--trust",
        help="the trust list (pole-admin trust; SQLite) to synchronise with the store every "
        "second; give it on one machine only",
    )
    ing.add_argument(
        "--max-skew",
        type=float,
        help="reject iat further than this many seconds from now (default: no check; a "
        "pole's backlog after a long outage is old but honest)",
    )
    ing.add_argument(
        "--inflight",
        type=int,
        default=1000,
        help="MQTT 5 Receive Maximum: messages a worker may hold unacknowledged (raise "
        "the broker's own limit to match, Mosquitto: max_inflight_messages)",
    )
    ing.add_argument("--batch", type=int, default=500, help="most messages in one commit")
    ing.add_argument(
        "--session-expiry",
        type=int,
        default=7 * 86400,
        help="seconds the broker keeps a worker's session (and its messages) while the "
        "worker is away",
    )
    ing.add_argument(
        "--key-poll",
        type=float,
        default=1.0,
        help="seconds between checks for new, rotated and revoked keys",
    )
    ing.add_argument(
        "--park",
        type=float,
        default=5.0,
        help="seconds a message with a key or pole not known yet waits for it (0: refuse at once)",
    )
    ing.add_argument(
        "--retention-days",
        type=int,
        default=0,
        help="drop partitions (SQLite: rows) older than this many days; 0 keeps everything",
    )
    ing.add_argument(
        "--raw-retention-days",
        type=int,
        help="a shorter (or longer) retention for the raw signed messages, which are most "
        "of the volume (default: --retention-days)",
    )
    ing.add_argument(
        "--partitions-ahead", type=int, default=3, help="days of partitions created ahead"
    )
    ing.add_argument("--metrics-host", default="127.0.0.1", help="address of /metrics")
    ing.add_argument(
        "--metrics-port", type=int, default=9464, help="port of /metrics (0: a free one)"
    )
    ing.add_argument(
        "--retire",
        action="store_true",
        help="after scaling down: drain the sessions of these workers (--first-worker, "
        "--workers) into the store, end them and exit; a stopped worker's session "
        "otherwise keeps taking its share of the group's messages until it expires",
    )
    ing.add_argument(
        "--stop-timeout",
        type=float,
        default=30.0,
        help="seconds workers get to commit and acknowledge on SIGTERM before being killed",
    )

    mig = sub.add_parser("migrate", help="apply the pending schema migrations and exit")
    _db_arg(mig)

    mnt = sub.add_parser("maintain", help="create partitions ahead, apply the retention, exit")
    _db_arg(mnt)
    mnt.add_argument("--partitions-ahead", type=int, default=3, help="days created ahead")
    mnt.add_argument("--retention-days", type=int, default=0, help="0 keeps everything")
    mnt.add_argument("--raw-retention-days", type=int, help="for the raw messages")

    ks = sub.add_parser("keys-sync", help="synchronise a trust list file with the store")
    _db_arg(ks)
    ks.add_argument("--trust", required=True, help="the trust list (SQLite)")
    ks.add_argument("--watch", action="store_true", help="keep going, once a second")

    lat = sub.add_parser("latest", help="latest readings per pole")
    _db_arg(lat)
    lat.add_argument("--pole", help="only this pole")
    lat.add_argument("--since", default="-1d", help="ISO time or -Nh/-Nd (default -1d)")
    lat.add_argument("--json", action="store_true", help="JSON lines instead of a table")

    al = sub.add_parser("alarms", help="alarms open now")
    _db_arg(al)
    al.add_argument("--since", default="-1d", help="ignore poles silent since (default -1d)")
    al.add_argument("--json", action="store_true", help="JSON lines instead of a table")

    hm = sub.add_parser("hourly", help="hourly means of a field near a point (PM2.5)")
    _db_arg(hm)
    hm.add_argument("--lat", type=float, required=True, help="WGS84 latitude")
    hm.add_argument("--lon", type=float, required=True, help="WGS84 longitude")
    hm.add_argument("--radius", type=float, default=500.0, help="metres (default 500)")
    hm.add_argument("--field", default="pm2_5", help="field name (default pm2_5)")
    hm.add_argument("--start", default="-1d", help="ISO time or -Nh/-Nd (default -1d)")
    hm.add_argument("--end", help="ISO time (default now)")
    hm.add_argument("--json", action="store_true", help="JSON lines instead of a table")

    sv = sub.add_parser(
        "serve", help="SensorThings API, NGSI-LD export, live map and public pages (city/web/)"
    )
    _db_arg(sv)
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    sv.add_argument(
        "--public-url",
        help="base URL of the public pages as the labels' QR codes name it (pole-admin "
        "provision/label --public-url), e.g. https://data.city.example/poles; default "
        "http://HOST:PORT/poles",
    )
    sv.add_argument("--owner", default="the municipality", help="who owns and runs the poles")
    sv.add_argument("--contact", default="", help="where residents ask (address or URL)")
    sv.add_argument("--title", default="Light poles of the city", help="the service's name")
    sv.add_argument(
        "--tile-url",
        default="",
        help="XYZ map tiles under the poles, e.g. https://tiles.city.example/{z}/{x}/{y}.png "
        "(default: none; the map needs no tile server)",
    )
    sv.add_argument(
        "--silent-after",
        type=float,
        default=120.0,
        help="seconds without a message after which a pole shows as silent (default 120; "
        "at least three of its windows)",
    )
    sv.add_argument(
        "--refresh", type=float, default=1.0, help="seconds between reads of the store (default 1)"
    )

    ex = sub.add_parser("export", help="raw signed messages as JSON lines (topic, payload hex)")
    _db_arg(ex)
    ex.add_argument("--since", default="1970-01-01", help="received at or after (ISO, -Nh)")
    ex.add_argument("--until", help="received before (ISO; default now)")
    ex.add_argument("--prefix", default="poles", help="topic prefix to write")
    ex.add_argument("--out", help="file to write (default: standard output)")

    return ap


def _print(rows: list, as_json: bool) -> None:
    for r in rows:
        d = {
            k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in r._asdict().items()
        }
        print(json.dumps(d) if as_json else "  ".join(str(v) for v in d.values()))


def cmd_ingest(a: argparse.Namespace) -> int:
    from city.ingest import WorkerConfig
    from city.supervisor import Service, ServiceConfig

    if not 1 <= a.workers <= 256:
        raise SystemExit("--workers must be 1 to 256")
    worker = WorkerConfig(
        index=0,
        broker=a.broker,
        db=a.db,
        client_id="",
        group=a.group,
        prefix=a.prefix,
        ca_file=a.ca_file,
        max_skew_s=a.max_skew,
        receive_maximum=a.inflight,
        batch_max=a.batch,
        key_poll_s=a.key_poll,
        park_s=a.park,
        session_expiry_s=a.session_expiry,
        retire=a.retire,
    )
    cfg = ServiceConfig(
        worker=worker,
        workers=a.workers,
        first_worker=a.first_worker,
        reader_base=a.reader_base,
        password_dir=a.password_dir,
        trust=a.trust,
        metrics_host=a.metrics_host,
        metrics_port=a.metrics_port,
        partitions_ahead_days=a.partitions_ahead,
        retention_days=a.retention_days,
        raw_retention_days=a.raw_retention_days,
        stop_timeout_s=a.stop_timeout,
    )
    return Service(cfg).run()


def cmd_serve(a: argparse.Namespace) -> int:
    from city.web.app import Settings, serve

    if not (0 < a.refresh <= 60 and a.silent_after > 0):
        raise SystemExit("--refresh must be 0 to 60 seconds and --silent-after positive")
    host = f"[{a.host}]" if ":" in a.host else a.host
    public_url = a.public_url or f"http://{host}:{a.port}/poles"
    store = open_store(a.db)
    try:
        store.migrate()  # the web service's indexes (0002) on a store ingest has not updated
    except StoreUnavailable as exc:
        print(f"database unavailable: {exc}", file=sys.stderr)
        return 3
    finally:
        store.close()
    settings = Settings(
        db=a.db,
        public_url=public_url,
        owner=a.owner,
        contact=a.contact,
        title=a.title,
        tile_url=a.tile_url,
        refresh_s=a.refresh,
        silent_after_s=a.silent_after,
    )
    return serve(settings, a.host, a.port)


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if a.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiomqtt").setLevel(logging.WARNING)
    if a.cmd == "ingest":
        return cmd_ingest(a)
    if a.cmd == "serve":
        return cmd_serve(a)
    store = open_store(a.db)
    try:
        if a.cmd == "migrate":
            for name in store.migrate():
                print(f"applied {name}")
        elif a.cmd == "maintain":
            store.migrate()
            for line in store.maintain(
                time.time(), a.partitions_ahead, a.retention_days, a.raw_retention_days
            ):
                print(line)
        elif a.cmd == "keys-sync":
            from city.keys import sync_trust

            store.migrate()
            while True:
                changed, to_file = sync_trust(store, Path(a.trust))
                if not a.watch:
                    print(f"{changed} key changes into the store, {to_file} into the file")
                    break
                time.sleep(1.0)
        elif a.cmd == "latest":
            _print(queries.latest_readings(store, _when(a.since), a.pole), a.json)
        elif a.cmd == "alarms":
            _print(queries.open_alarms(store, _when(a.since)), a.json)
        elif a.cmd == "hourly":
            end = _when(a.end) if a.end else dt.datetime.now(dt.UTC)
            rows = queries.hourly_means(store, a.lat, a.lon, _when(a.start), end, a.radius, a.field)
            _print(rows, a.json)
        elif a.cmd == "export":
            until = _when(a.until).timestamp() if a.until else time.time() + 1
            out = open(a.out, "w") if a.out else sys.stdout  # noqa: SIM115
            n = 0
            try:
                for pole, kind, raw in store.export(_when(a.since).timestamp(), until):
                    topic = f"{a.prefix}/{pole}/{kind}"
                    out.write(json.dumps({"topic": topic, "payload": raw.hex()}) + "\n")
                    n += 1
            finally:
                if a.out:
                    out.close()
            print(f"exported {n} messages", file=sys.stderr)
    except StoreUnavailable as exc:
        print(f"database unavailable: {exc}", file=sys.stderr)
        return 3
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The city's store: one interface, the same tests on SQLite and on a real PostgreSQL."""

# ruff: noqa: F811  (pytest fixtures imported from tests/city_fixtures.py)

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from city import queries, rows
from city.keys import sync_trust
from city.store import open_store
from provisioning.trustlist import KeyRecord, TrustList
from provisioning.verifier import Verifier
from tests.city_fixtures import (  # noqa: F401  (fixtures)
    NOW,
    birth,
    counts,
    data,
    health,
    offset,
    pg_cluster,
    signer,
    store,
    store_url,
)


def items(*messages: tuple, verifier: Verifier | None = None) -> list[rows.Item]:
    """Verify (signer, kind, raw) triples as a worker does and build their rows."""
    keys = {s.kid: KeyRecord(s.pole_id, s.public_key) for s, _, _ in messages}
    ver = verifier or Verifier(keys)
    out = []
    for s, kind, raw in messages:
        v = ver.check(f"poles/{s.pole_id}/{kind}", raw)
        assert v.status != "rejected", v
        out.append(rows.item(v, raw, time.time()))
    return out


def test_migrations_are_versioned_and_applied_once(store_url):
    a, b = open_store(store_url), open_store(store_url)
    try:
        assert a.migrate() == ["0001_init.sql", "0002_web_indexes.sql"]
        assert a.migrate() == [] and b.migrate() == []
    finally:
        a.close()
        b.close()


def test_a_message_and_its_rows_are_stored_once(store):
    s = signer("nl-ams-0001")
    batch = items(
        (s, "birth", birth(s, 1, NOW, 52.37, 4.90)),
        (s, "data", data(s, 2, NOW + 60, [10.0, 12.0])),
        (s, "counts", counts(s, 3, NOW + 900, 40)),
        (s, "health", health(s, 4, NOW + 60, {"tilt": "leans 12\x00 deg"})),
    )
    assert store.write(batch) == [True] * 4
    assert store.write(batch) == [False] * 4  # a redelivery, or a replay: stored once
    q = store.query
    ph = "%(p)s" if store.dialect == "postgres" else ":p"
    assert q(f"SELECT count(*) FROM messages WHERE pole_id = {ph}", {"p": s.pole_id}) == [(4,)]
    assert sorted(q("SELECT sensor, field, count FROM observations", {})) == [
        ("bme280", "temperature", 2),
        ("sds011", "pm10", 2),
        ("sds011", "pm2_5", 2),
    ]
    assert q("SELECT field, count, suppressed FROM counts", {}) == [("people", 40, False)]
    assert q("SELECT alarm, detail FROM alarms", {}) == [("tilt", "leans 12\ufffd deg")]
    raws = {bytes(r[0]) for r in q("SELECT raw FROM messages", {})}
    assert raws == {it.raw for it in batch}  # the signed bytes, as received
    if store.dialect == "postgres":
        ((lat, lon),) = q(
            "SELECT ST_Y(location::geometry), ST_X(location::geometry) FROM poles", {}
        )
    else:
        ((lat, lon),) = q("SELECT lat, lon FROM poles", {})
    assert (round(lat, 5), round(lon, 5)) == (52.37, 4.9)


def test_a_batch_with_duplicates_and_concurrent_writers_store_each_once(store_url, store):
    """Four writers (each its own connection, as workers have) race over overlapping
    batches: every message is stored exactly once and reported new exactly once."""
    poles = [signer(f"nl-ams-{i:04d}") for i in range(1, 5)]
    msgs = [(s, "data", data(s, seq, NOW + 60 * seq, [5.0])) for s in poles for seq in range(1, 16)]
    keys = {s.kid: KeyRecord(s.pole_id, s.public_key) for s in poles}
    all_items = items(*msgs, verifier=Verifier(keys))
    new_counts = []

    def writer(k: int) -> None:
        st = open_store(store_url)
        try:
            mine = all_items[k::2] + all_items[: len(all_items) // 2]  # overlaps everyone
            seen, uniq = set(), []
            for it in mine:
                if it.key not in seen:
                    seen.add(it.key)
                    uniq.append(it)
            n = 0
            for i in range(0, len(uniq), 7):
                for _ in range(20):
                    try:
                        n += sum(st.write(uniq[i : i + 7]))
                        break
                    except Exception:  # SQLite: busy beyond the timeout; try again
                        time.sleep(0.05)
            new_counts.append(n)
        finally:
            st.close()

    threads = [threading.Thread(target=writer, args=(k % 2,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(new_counts) == len(all_items)
    assert store.query("SELECT count(*) FROM messages", {}) == [(len(all_items),)]
    assert store.query("SELECT count(*) FROM observations", {}) == [(3 * len(all_items),)]


def test_keys_have_revisions_and_a_revoked_key_stays_revoked(store):
    a, b = signer("nl-ams-0001"), signer("nl-ams-0002")
    ka, kb = KeyRecord(a.pole_id, a.public_key), KeyRecord(b.pole_id, b.public_key)
    assert store.apply_trust([ka, kb], []) == 2
    recs, rev = store.keys_since(0)
    assert {r.kid for r in recs} == {a.kid, b.kid} and rev >= 2
    assert store.apply_trust([ka], [a.kid]) == 1  # the add is a no-op, the revocation not
    recs, rev2 = store.keys_since(rev)
    assert [(r.kid, r.status) for r in recs] == [(a.kid, "revoked")] and rev2 > rev
    store.apply_trust([KeyRecord(a.pole_id, a.public_key)], [])  # never active again
    assert {r.kid: r.status for r in store.keys_since(0)[0]}[a.kid] == "revoked"
    # A rotation announced under a revoked key is recorded revoked; under an active one,
    # active: both with the batch that carries the announcement.
    new_a, new_b = signer(a.pole_id), signer(b.pole_id)
    store.write(
        [],
        [
            KeyRecord(a.pole_id, new_a.public_key, rotated_from=a.kid.hex()),
            KeyRecord(b.pole_id, new_b.public_key, rotated_from=b.kid.hex()),
        ],
    )
    recs, rev3 = store.keys_since(rev2)
    assert {r.kid: (r.status, r.rotated_from) for r in recs} == {
        new_a.kid: ("revoked", a.kid.hex()),
        new_b.kid: ("active", b.kid.hex()),
    }
    assert store.keys_since(rev3) == ([], rev3)


def test_the_trust_list_file_and_the_store_stay_in_step(store, tmp_path):
    path = tmp_path / "trust.sqlite"
    a, b = signer("nl-ams-0001"), signer("nl-ams-0002")
    with TrustList(path) as tl:
        tl.add(a.pole_id, a.public_key)
        tl.add(b.pole_id, b.public_key)
    assert sync_trust(store, path) == (2, 0)
    assert sync_trust(store, path) == (0, 0)
    # A worker accepted a rotation of b: the file learns it, with its origin.
    b2 = signer(b.pole_id)
    store.write([], [KeyRecord(b.pole_id, b2.public_key, rotated_from=b.kid.hex())])
    assert sync_trust(store, path) == (0, 1)
    with TrustList(path) as tl:
        assert {r.kid: r.rotated_from for r in tl.records()}[b2.kid] == b.kid.hex()
        # b's key was stolen: revoking it as compromised revokes the rotated key too.
        assert tl.revoke(kid=b.kid.hex(), compromised=True) == 2
        tl.revoke(pole_id=a.pole_id)
    assert sync_trust(store, path)[0] == 3
    assert {r.kid: r.status for r in store.keys_since(0)[0]} == {
        a.kid: "revoked",
        b.kid: "revoked",
        b2.kid: "revoked",
    }


def test_replay_floors_only_rise(store):
    store.save_floors({b"k" * 8: 10, b"j" * 8: 3})
    store.save_floors({b"k" * 8: 5, b"j" * 8: 7})
    assert store.floors() == {b"k" * 8: 10, b"j" * 8: 7}


def test_hostile_values_from_a_valid_signature_are_stored_not_fatal(store):
    """A pole signs what it likes: NUL in text, 64-bit counters beyond a bigint, times
    in the far future. The batch is stored anyway (PostgreSQL would refuse these raw)."""
    s = signer("nl-ams-0001")
    from tests.city_fixtures import pack

    raw = pack(
        s,
        "health",
        1,
        NOW,
        [("counter/x", 2**64 - 1), ("alarm/a", True), ("alarm/a/detail", "\x00" * 300)],
    )
    far = pack(s, "counts", 2, 2**40, [("bin", 2**63), ("ld2450/people/count", -(2**64) + 1)])
    assert store.write(items((s, "health", raw), (s, "counts", far))) == [True, True]


def _fill_city(store, here: tuple[float, float]) -> dict:
    """Three poles 0 m, 300 m and 700 m north of ``here``; two hours of windows."""
    poles = {
        "nl-ams-0001": (0, [10.0, 20.0]),
        "nl-ams-0002": (300, [30.0]),
        "nl-ams-0003": (700, [99.0]),
    }
    msgs = []
    for pid, (north, samples) in poles.items():
        s = signer(pid)
        msgs.append((s, "birth", birth(s, 1, NOW - 7200, *offset(*here, north))))
        seq = 2
        for minute in range(1, 121):  # windows ending NOW-2h+1min ... NOW
            vals = samples if minute <= 60 else [v + 1 for v in samples]
            end = NOW - 7200 + 60 * minute
            msgs.append((s, "data", data(s, seq, end, vals, temp=float(minute))))
            seq += 1
        msgs.append((s, "health", health(s, seq, NOW - 300, {"lamp_failure": "no current"})))
        alarms = {"tilt": "pole leans 12 deg"} if pid == "nl-ams-0001" else None
        msgs.append((s, "health", health(s, seq + 1, NOW - 60, alarms)))
    for i in range(0, len(msgs), 100):
        store.write(items(*msgs[i : i + 100]))
    return poles


def test_the_citys_questions_are_answered(store):
    here = (52.3702, 4.8952)
    _fill_city(store, here)
    hours = queries.hourly_means(store, *here, NOW - 7200, NOW, radius_m=500)
    got = {(h.pole_id, int(h.hour.timestamp())): (round(h.mean, 6), h.samples) for h in hours}
    assert got == {
        ("nl-ams-0001", NOW - 7200): (15.0, 120),  # 60 windows of [10, 20]
        ("nl-ams-0001", NOW - 3600): (16.0, 120),
        ("nl-ams-0002", NOW - 7200): (30.0, 60),
        ("nl-ams-0002", NOW - 3600): (31.0, 60),
    }  # the pole 700 m away is not within 500 m
    assert {round(h.distance_m) for h in hours} == {0, 300}

    latest = queries.latest_readings(store, NOW - 3600)
    temps = {r.pole_id: (r.mean, r.t) for r in latest if r.field == "temperature"}
    assert set(temps) == {"nl-ams-0001", "nl-ams-0002", "nl-ams-0003"}
    assert all(v == (120.0, dt.datetime.fromtimestamp(NOW, dt.UTC)) for v in temps.values())
    assert len(queries.latest_readings(store, NOW - 3600, pole_id="nl-ams-0002")) == 3

    alarms = queries.open_alarms(store, NOW - 3600)
    # Only what each pole's latest health message raises: the lamp alarms were cleared.
    assert [(a.pole_id, a.alarm, a.detail) for a in alarms] == [
        ("nl-ams-0001", "tilt", "pole leans 12 deg")
    ]


def test_the_questions_from_the_command_line(store, store_url):
    import json
    import subprocess
    import sys

    from tests.city_fixtures import ROOT

    here = (52.3702, 4.8952)
    _fill_city(store, here)

    def cli(*args: str) -> list[dict]:
        out = subprocess.run(
            [sys.executable, "-m", "city.cli", *args, "--db", store_url, "--json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        return [json.loads(line) for line in out.splitlines()]

    since = dt.datetime.fromtimestamp(NOW - 3600, dt.UTC).isoformat()
    assert len(cli("latest", "--since", since)) == 9  # 3 poles x 3 series
    assert [a["alarm"] for a in cli("alarms", "--since", since)] == ["tilt"]
    start = dt.datetime.fromtimestamp(NOW - 7200, dt.UTC).isoformat()
    end = dt.datetime.fromtimestamp(NOW, dt.UTC).isoformat()
    hours = cli(
        "hourly", "--lat", str(here[0]), "--lon", str(here[1]), "--start", start, "--end", end
    )
    assert {(h["pole_id"], round(h["mean"], 6)) for h in hours} == {
        ("nl-ams-0001", 15.0),
        ("nl-ams-0001", 16.0),
        ("nl-ams-0002", 30.0),
        ("nl-ams-0002", 31.0),
    }


def test_retention_and_partitions(store):
    s = signer("nl-ams-0001")
    old, future, recent = NOW - 40 * 86400, NOW + 10 * 86400, NOW - 5 * 86400
    batch = items(
        (s, "data", data(s, 1, old, [1.0])),
        (s, "data", data(s, 2, future, [2.0])),
        (s, "data", data(s, 3, NOW, [3.0])),
        (s, "data", data(s, 4, recent, [4.0])),
    )
    assert store.write(batch) == [True] * 4
    if store.dialect == "postgres":
        # The future row waited in the default partition; creating its day moves it there.
        done = store.maintain(time.time(), 12, 0)
        assert any(line.startswith("created messages_p") for line in done)
        q = "SELECT count(*) FROM {} WHERE t = %(t)s"
        future_t = dt.datetime.fromtimestamp(future, dt.UTC)
        assert store.query(q.format("messages_default"), {"t": future_t}) == [(0,)]
        assert store.write(batch[1:2]) == [False]  # still unique after the move
    store.maintain(time.time(), 2, 30)
    left = store.query("SELECT count(*) FROM messages", {})
    assert left == [(3,)]  # the 40-day-old message is gone, the others stay
    assert store.query("SELECT count(*) FROM observations", {}) == [(9,)]
    # The raw signed bytes (most of the volume) may be kept for less time than readings.
    store.maintain(time.time(), 2, 30, raw_retention_days=3)
    assert store.query("SELECT count(*) FROM messages", {}) == [(2,)]
    assert store.query("SELECT count(*) FROM observations", {}) == [(9,)]
    if store.dialect == "postgres":
        days = {
            r[0]
            for r in store.query(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'messages'::regclass",
                {},
            )
        }
        oldest = (dt.datetime.now(dt.UTC) - dt.timedelta(days=30)).strftime("%Y%m%d")
        assert all(d == "messages_default" or d[-8:] >= oldest for d in days)


def test_export_gives_the_signed_bytes_back(store):
    s = signer("nl-ams-0001")
    raws = [data(s, i, NOW + 60 * i, [float(i)]) for i in range(1, 6)]
    store.write(items(*[(s, "data", r) for r in raws]))
    out = list(store.export(0, time.time() + 10))
    assert sorted(r for _, _, r in out) == sorted(raws)
    ver = Verifier({s.kid: KeyRecord(s.pole_id, s.public_key)})
    assert all(ver.check(f"poles/{p}/{k}", r).accepted for p, k, r in out)


@pytest.mark.parametrize("url", ["mysql://x", "sqlite://relative"])
def test_a_wrong_url_says_what_to_use(url):
    with pytest.raises(ValueError, match="postgresql://"):
        open_store(url)

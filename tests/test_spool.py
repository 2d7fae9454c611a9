"""The spool keeps messages until acknowledged, survives reopening, bounds itself, and
recovers from a corrupt file without stopping the pole."""

from edge.spool import Spool


def test_fifo_until_ack_and_survives_reopen(tmp_path):
    sp = Spool(tmp_path / "s.sqlite")
    ids = [sp.put("data", bytes([i]) * 10) for i in range(5)]
    assert [r[0] for r in sp.pending(10)] == ids
    sp.ack(ids[0])
    sp.close()
    sp = Spool(tmp_path / "s.sqlite")
    rows = sp.pending(10)
    assert [r[0] for r in rows] == ids[1:] and rows[0][2] == b"\x01" * 10
    assert sp.depth() == 4 and sp.bytes == 40


def test_bounded_by_bytes_drops_oldest_first(tmp_path):
    sp = Spool(tmp_path / "s.sqlite", max_bytes=1000)
    for i in range(30):
        sp.put("data", bytes([i]) * 100)
    rows = sp.pending(100)
    assert sp.bytes <= 1000 and sp.dropped == 20
    assert [r[2][0] for r in rows] == list(range(20, 30))


def test_bounded_by_age(tmp_path):
    now = [1_800_000_000.0]
    sp = Spool(tmp_path / "s.sqlite", max_bytes=250, max_age_s=60, clock=lambda: now[0])
    sp.put("data", b"a" * 100)
    now[0] += 120
    sp.put("data", b"b" * 100)
    sp.put("data", b"c" * 100)  # over the byte bound triggers a trim, age first
    assert [r[2][:1] for r in sp.pending()] == [b"b", b"c"]


def test_corrupt_file_is_moved_aside(tmp_path):
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    sp = Spool(path)
    assert sp.recovered_corrupt == 1
    assert any(p.name.startswith("s.sqlite.corrupt-") for p in tmp_path.iterdir())
    sp.put("data", b"x")
    assert sp.depth() == 1


def test_ids_never_repeat_even_after_the_spool_empties(tmp_path):
    """The publisher's live/backlog cursors compare ids: a reused id would be skipped."""
    sp = Spool(tmp_path / "s.sqlite")
    first = [sp.put("data", b"x") for _ in range(5)]
    sp.ack(*first)
    assert sp.depth() == 0
    again = sp.put("data", b"y")
    assert again > max(first)
    sp.close()
    assert Spool(tmp_path / "s.sqlite").put("data", b"z") > again


def test_a_spool_of_version_0_1_keeps_its_messages(tmp_path):
    """0.1 stored an MQTT topic per row; the transport-neutral spool migrates in place."""
    import sqlite3

    db = sqlite3.connect(tmp_path / "s.sqlite")
    db.execute(
        "CREATE TABLE spool (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
        "payload BLOB NOT NULL, retain INTEGER NOT NULL DEFAULT 0, kind TEXT NOT NULL, "
        "created REAL NOT NULL)"
    )
    db.execute("INSERT INTO spool VALUES (7, 'poles/p/data', x'0102', 0, 'data', 1.0)")
    db.commit()
    db.close()
    sp = Spool(tmp_path / "s.sqlite")
    assert sp.pending(10) == [(7, "data", b"\x01\x02", False)]
    assert sp.put("health", b"h") == 8

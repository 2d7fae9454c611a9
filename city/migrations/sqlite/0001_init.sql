-- 0001: the city's store in one SQLite file (the embedded default: no set-up).
-- The same tables as on PostgreSQL (city/migrations/postgres/0001_init.sql), without
-- partitions (retention deletes rows) and without PostGIS (a pole's location is two
-- columns; distances come from city_distance_m(), a function the store registers).
-- Times are POSIX seconds (REAL); kid, cti and floor are bytes, as on PostgreSQL.

CREATE TABLE poles (
    pole_id     TEXT PRIMARY KEY,
    lat         REAL,
    lon         REAL,
    birth_at    REAL,
    software    TEXT,
    sensors     TEXT,
    window_s    INTEGER,
    bdseq       INTEGER,
    updated_at  REAL NOT NULL
);

CREATE TABLE keys (
    kid           BLOB PRIMARY KEY,
    pole_id       TEXT NOT NULL,
    public_key    BLOB NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    rotated_from  BLOB,
    added_at      REAL NOT NULL,
    revoked_at    REAL,
    rev           INTEGER NOT NULL
);
CREATE INDEX keys_by_rev ON keys (rev);

CREATE TABLE replay_floors (kid BLOB PRIMARY KEY, floor BLOB NOT NULL);

CREATE TABLE messages (
    kid          BLOB NOT NULL,
    cti          BLOB NOT NULL,
    t            REAL NOT NULL,
    pole_id      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    received_at  REAL NOT NULL,
    raw          BLOB NOT NULL,
    PRIMARY KEY (kid, cti)
);
CREATE INDEX messages_by_time ON messages (t);

CREATE TABLE observations (
    t REAL NOT NULL, pole_id TEXT NOT NULL, sensor TEXT NOT NULL, field TEXT NOT NULL,
    unit TEXT, mean REAL, min REAL, max REAL, count INTEGER NOT NULL, window_s INTEGER,
    kid BLOB NOT NULL, cti BLOB NOT NULL
);
CREATE INDEX observations_by_pole ON observations (pole_id, t);
CREATE INDEX observations_by_time ON observations (t);

CREATE TABLE counts (
    t REAL NOT NULL, pole_id TEXT NOT NULL, sensor TEXT NOT NULL, field TEXT NOT NULL,
    count INTEGER NOT NULL, suppressed INTEGER NOT NULL, bin_s INTEGER,
    kid BLOB NOT NULL, cti BLOB NOT NULL
);
CREATE INDEX counts_by_pole ON counts (pole_id, t);

CREATE TABLE health (
    t REAL NOT NULL, pole_id TEXT NOT NULL, uptime_s REAL, clock_valid INTEGER,
    sensors_up TEXT NOT NULL, counters TEXT NOT NULL,
    kid BLOB NOT NULL, cti BLOB NOT NULL
);
CREATE INDEX health_by_pole ON health (pole_id, t);

CREATE TABLE alarms (
    t REAL NOT NULL, pole_id TEXT NOT NULL, alarm TEXT NOT NULL, detail TEXT,
    kid BLOB NOT NULL, cti BLOB NOT NULL
);
CREATE INDEX alarms_by_pole ON alarms (pole_id, t);

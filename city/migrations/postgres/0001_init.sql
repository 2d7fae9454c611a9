-- 0001: the city's store on PostgreSQL 15 with PostGIS 3.
--
-- Acceptance: a message is stored once per (kid, cti). The tables of time series are
-- partitioned by day on a time taken from the signed message itself (iat for messages,
-- the window's end for readings), so a redelivery or a replay of the same bytes always
-- lands in the same partition, where the primary key refuses the second copy.
-- Partitions are created ahead and dropped after the retention by the service
-- (city/partitions.py); rows outside every partition go to the DEFAULT partitions, from
-- which a partition created later takes them over.

CREATE EXTENSION IF NOT EXISTS postgis;

CREATE TABLE poles (
    pole_id     text PRIMARY KEY,
    location    geography(Point, 4326),      -- from the birth's location/lat, location/lon
    birth_at    timestamptz,                 -- signed time of the birth that set this row
    software    text,
    sensors     text,
    window_s    bigint,
    bdseq       bigint,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX poles_location ON poles USING gist (location);

-- Pole keys as every worker sees them. ``rev`` grows with every change, in commit order
-- (writers take one advisory lock), so a worker polls "WHERE rev > my last".
CREATE SEQUENCE keys_rev;
CREATE TABLE keys (
    kid           bytea PRIMARY KEY,
    pole_id       text NOT NULL,
    public_key    bytea NOT NULL,
    status        text NOT NULL CHECK (status IN ('active', 'revoked')),
    rotated_from  bytea,
    added_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    rev           bigint NOT NULL
);
CREATE INDEX keys_by_rev ON keys (rev);

-- Each key's replay floor (the verifier's window floor), kept so that a restarted worker
-- refuses what lies below it even after its partition is gone.
CREATE TABLE replay_floors (
    kid    bytea PRIMARY KEY,
    floor  bytea NOT NULL                    -- 8 bytes big-endian, ordered like the cti
);

CREATE TABLE messages (
    kid          bytea NOT NULL,
    cti          bytea NOT NULL,             -- 8 bytes big-endian: boot counter || sequence
    t            timestamptz NOT NULL,       -- signed iat; 1970-01-01 when the pole had no clock
    pole_id      text NOT NULL,
    kind         text NOT NULL,
    received_at  timestamptz NOT NULL,
    raw          bytea NOT NULL,             -- the COSE_Sign1 as received: re-verifiable
    PRIMARY KEY (kid, cti, t)
) PARTITION BY RANGE (t);
CREATE TABLE messages_default PARTITION OF messages DEFAULT;

CREATE TABLE observations (                -- one row per series per window
    t         timestamptz NOT NULL,          -- the window's end (SenML bt)
    pole_id   text NOT NULL,
    sensor    text NOT NULL,
    field     text NOT NULL,
    unit      text,
    mean      double precision,
    min       double precision,
    max       double precision,
    count     bigint NOT NULL,
    window_s  bigint,
    kid       bytea NOT NULL,
    cti       bytea NOT NULL
) PARTITION BY RANGE (t);
CREATE TABLE observations_default PARTITION OF observations DEFAULT;
CREATE INDEX observations_by_pole ON observations (pole_id, t);

CREATE TABLE counts (                      -- one row per series per bin, after the privacy gate
    t           timestamptz NOT NULL,        -- the bin's end
    pole_id     text NOT NULL,
    sensor      text NOT NULL,
    field       text NOT NULL,
    count       bigint NOT NULL,
    suppressed  boolean NOT NULL,
    bin_s       bigint,
    kid         bytea NOT NULL,
    cti         bytea NOT NULL
) PARTITION BY RANGE (t);
CREATE TABLE counts_default PARTITION OF counts DEFAULT;
CREATE INDEX counts_by_pole ON counts (pole_id, t);

CREATE TABLE health (                      -- one row per health message
    t            timestamptz NOT NULL,
    pole_id      text NOT NULL,
    uptime_s     double precision,
    clock_valid  boolean,
    sensors_up   jsonb NOT NULL,             -- {"sds011": true, ...}
    counters     jsonb NOT NULL,             -- {"publish_ok": 12, ...}
    kid          bytea NOT NULL,
    cti          bytea NOT NULL
) PARTITION BY RANGE (t);
CREATE TABLE health_default PARTITION OF health DEFAULT;
CREATE INDEX health_by_pole ON health (pole_id, t);

CREATE TABLE alarms (                      -- one row per alarm raised in a health message
    t        timestamptz NOT NULL,
    pole_id  text NOT NULL,
    alarm    text NOT NULL,
    detail   text,
    kid      bytea NOT NULL,
    cti      bytea NOT NULL
) PARTITION BY RANGE (t);
CREATE TABLE alarms_default PARTITION OF alarms DEFAULT;
CREATE INDEX alarms_by_pole ON alarms (pole_id, t);

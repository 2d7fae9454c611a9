-- 0002: what the city's web service (city/web/) reads without scanning whole tables.
-- messages_by_received: what arrived since the service last looked (a pole is silent
--   by the city's clock, not by its own, which may be wrong or simulated);
-- messages_meta: each pole's latest birth, death, manifest and rotation, among a few
--   rows per pole (a partial index: data, counts and health messages stay out of it,
--   so ingest pays nothing for it on the messages that make up the volume).
-- Both are created on every partition, and on those city/partitions.py attaches later.
CREATE INDEX messages_by_received ON messages (received_at);
CREATE INDEX messages_meta ON messages (pole_id, kind, t)
    WHERE kind IN ('birth', 'death', 'manifest', 'rotate');

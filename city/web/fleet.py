"""The live state of every pole, as the city's store tells it, refreshed about once a second.

Why a state in memory and not a query per request: the map, the SensorThings catalogue
(Things, Datastreams, ...), the NGSI-LD export and the public pages all ask the same
questions (where is the pole, what does it carry, what did its signed manifest say, is
it alarming, when was it last heard), and the alarms must reach the browser as they
arrive. One refresh loop asks the store what changed since it last looked
(``messages_by_received``, migration 0002) and re-reads only those poles: their latest
birth, death and manifest (``messages_meta``), their latest health message and the
alarms it names. Every few minutes it reads everything again, so that a row committed
late (a worker that held a batch through a database outage) is never missed for long.

A pole's state, in order: ``revoked`` (every key it had is revoked), ``silent`` (its
last session ended with a death, or nothing arrived for ``silent_after_s``, measured by
the city's clock when messages arrived, not by the pole's own, which may be wrong),
``alarm`` (its latest health message names alarms), else ``ok``.

The manifest is read from its raw signed bytes, verified again with the key the store
holds, so what a public page states is what the pole signed.

Readers never see the state half-updated and never wait for the database: each refresh
that changed something publishes a new ``View`` (copies of the poles and keys), which
request handlers take as a whole.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from city.web import db
from edge.descriptors import DescriptorError, SensorDescriptor, load_sensor
from provisioning.trustlist import KeyRecord, TrustError
from provisioning.verifier import Verifier

log = logging.getLogger(__name__)

STATES = ("ok", "alarm", "silent", "revoked")
META_KINDS = ("birth", "death", "manifest")


def fingerprint(kid: bytes) -> str:
    """A key id as the label prints it (edge.cose.fingerprint): grouped hex."""
    h = kid.hex()
    return ":".join(h[i : i + 4] for i in range(0, len(h), 4))


@functools.lru_cache(maxsize=256)
def descriptor(model: str) -> SensorDescriptor | None:
    """The hardware descriptor of ``model`` if this installation knows it."""
    try:
        return load_sensor(model)
    except (DescriptorError, OSError, ValueError, KeyError):
        return None


@dataclasses.dataclass
class Key:
    kid: bytes
    pole_id: str
    public_key: bytes
    status: str
    added_at: float | None
    revoked_at: float | None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.kid)


@dataclasses.dataclass
class Manifest:
    """What a pole's latest signed manifest says (records relative to the pole)."""

    records: dict[str, object]
    signed_at: float | None  # iat
    received_at: float | None
    kid: bytes
    sha256: str  # of the raw COSE_Sign1 bytes, as stored
    verified: bool  # the signature checks out with the stored key

    def get(self, name: str) -> object:
        return self.records.get(name)

    def sensors(self) -> list[tuple[str, str, str, list[str]]]:
        """(name, model, purpose, fields that can leave) per sensor, in signed order."""
        out = []
        for rel, model in self.records.items():
            parts = rel.split("/")
            if len(parts) == 3 and parts[0] == "sensor" and parts[2] == "model":
                name = parts[1]
                leaves = str(self.records.get(f"sensor/{name}/leaves") or "")
                fields = [] if leaves in ("", "nothing") else leaves.split(",")
                purpose = str(self.records.get(f"sensor/{name}/purpose") or "")
                out.append((name, str(model), purpose, fields))
        return out


@dataclasses.dataclass(frozen=True)
class Series:
    """One published series of a pole: a SensorThings Datastream."""

    pole_id: str
    sensor: str
    field: str
    model: str
    kind: str  # "data" (window statistics) or "counts" (binned counts)
    unit: str | None


@dataclasses.dataclass
class Pole:
    pole_id: str
    lat: float | None = None
    lon: float | None = None
    software: str | None = None
    sensors_text: str | None = None
    window_s: int | None = None
    birth_at: float | None = None
    birth_rx: float | None = None
    death_rx: float | None = None
    last_heard: float | None = None
    health_t: float | None = None
    health_kid: bytes | None = None
    alarms: dict[str, str | None] = dataclasses.field(default_factory=dict)
    alarm_since: dict[str, float] = dataclasses.field(default_factory=dict)
    manifest: Manifest | None = None
    state: str = "silent"
    series: tuple[Series, ...] = ()


def read_manifest(pole_id: str, raw: bytes, key: Key | None) -> Manifest | None:
    """The records of a signed manifest, verified again with the stored key."""
    if key is None:
        return None
    try:
        rec = KeyRecord(pole_id, key.public_key)  # the signature, not today's status
    except TrustError:
        return None
    v = Verifier({rec.kid: rec}, fast=False).check(f"poles/{pole_id}/manifest", raw)
    if v.status == "rejected":
        log.warning("manifest of %s does not verify: %s", pole_id, v.reason)
        return None
    base = len(pole_id) + 1
    records = {r[0][base:]: r[2] for r in v.records}
    return Manifest(records, v.iat, None, key.kid, hashlib.sha256(raw).hexdigest(), True)


def series_of(p: Pole) -> tuple[Series, ...]:
    """The pole's published series: what its signed manifest says can leave (or, before
    a manifest arrived, the public and count fields of the models its birth names), with
    units and kinds from the hardware descriptors."""
    sensors: list[tuple[str, str, list[str] | None]] = []
    if p.manifest is not None:
        sensors = [(n, m, fields) for n, m, _purpose, fields in p.manifest.sensors()]
    elif p.sensors_text:
        for part in p.sensors_text.split(","):
            name, _, model = part.partition(":")
            if name and model:
                sensors.append((name, model, None))
    out = []
    for name, model, fields in sensors:
        desc = descriptor(model)
        by_senml = {f.senml: f for f in desc.fields.values()} if desc else {}
        if fields is None:  # from the birth: public and count fields of the descriptor
            fields = [s for s, f in by_senml.items() if f.privacy in ("public", "count")]
        for field in fields:
            f = by_senml.get(field)
            kind = "counts" if field == "unique_devices" or (f and f.privacy == "count") else "data"
            unit = "count" if kind == "counts" else (f.unit if f else None)
            out.append(Series(p.pole_id, name, field, model, kind, unit))
    return tuple(out)


class View:
    """The fleet as one refresh left it: read by request handlers, never changed.

    Args:
        poles: pole id -> Pole.
        keys: kid -> Key.
        pole_keys: pole id -> its keys, the newest active one first.
        version: grows whenever a catalogue would show something else.
    """

    def __init__(
        self,
        poles: dict[str, Pole],
        keys: dict[bytes, Key],
        pole_keys: dict[str, list[Key]],
        version: int,
    ) -> None:
        self.poles = poles
        self.keys = keys
        self.pole_keys = pole_keys
        self.version = version

    def keys_of(self, pole_id: str) -> list[Key]:
        """The pole's keys, the newest active one first."""
        return list(self.pole_keys.get(pole_id, ()))

    def summary(self, p: Pole) -> dict:
        """A pole as the map and the events show it (plain JSON values)."""
        keys = self.keys_of(p.pole_id)
        return {
            "id": p.pole_id,
            "state": p.state,
            "lat": p.lat,
            "lon": p.lon,
            "lastHeard": p.last_heard,
            "healthTime": p.health_t,
            "alarms": [
                {"alarm": a, "detail": d, "since": p.alarm_since.get(a)}
                for a, d in sorted(p.alarms.items())
            ],
            "software": p.software,
            "key": keys[0].fingerprint if keys else None,
            "keyStatus": keys[0].status if keys else None,
        }


class Fleet:
    """Every pole's state; ``refresh`` (in a database thread) brings it up to date and
    returns the events to broadcast.

    Args:
        reader: the store.
        silent_after_s: a pole from which nothing arrived for this long (or three of its
            windows, if longer) is silent.
        lookback_s: how far back the first read looks for arrivals.
        full_every_s: how often everything is read again.
        clock: the city's clock (POSIX seconds).
    """

    def __init__(
        self,
        reader: db.Reader,
        *,
        silent_after_s: float = 120.0,
        lookback_s: float = 86400.0,
        full_every_s: float = 300.0,
        overlap_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reader = reader
        self.silent_after_s = silent_after_s
        self.lookback_s = lookback_s
        self.full_every_s = full_every_s
        self.overlap_s = overlap_s
        self.clock = clock
        self.poles: dict[str, Pole] = {}
        self.keys: dict[bytes, Key] = {}
        self.pole_keys: dict[str, list[Key]] = {}  # newest active first
        self.key_rev = 0
        self.version = 0  # grows whenever anything a catalogue shows changed
        self._seen: dict[tuple[str, str], float] = {}  # (pole, kind) -> latest arrival
        self._watermark = 0.0
        self._last_full = -math.inf
        self.events: deque[dict] = deque(maxlen=1000)
        self.event_id = 0
        self.events_lock = threading.Lock()  # the deque, between refresh and the streams
        self.view = View({}, {}, {}, 0)

    # -- reading the store ----------------------------------------------------------------
    def refresh(self) -> list[dict]:
        """Bring the state up to date; the events (state changes, alarms raised and
        cleared) it caused, also kept in ``events``."""
        now = self.clock()
        full = now - self._last_full >= self.full_every_s
        changed = self._read_keys()
        if full:
            self._last_full = now
            since = now - self.lookback_s
            rows = self.reader.pick(db.POLES, {"all_poles": True, "poles": self._p([])})
            changed |= self._apply_poles(rows)
        else:
            since = self._watermark - self.overlap_s
        arrivals = self.reader.query(db.CHANGES, {"since": db.tparam(self.reader.dialect, since)})
        meta, health, born = set(), set(), set()
        for pole_id, kind, rx in arrivals:
            rx = db.epoch(rx) or 0.0
            self._watermark = max(self._watermark, rx)
            if pole_id not in self.poles or kind == "birth":
                born.add(pole_id)
            if rx > self._seen.get((pole_id, kind), -1.0):
                self._seen[(pole_id, kind)] = rx
                p = self.poles.setdefault(pole_id, Pole(pole_id))
                p.last_heard = max(p.last_heard or 0.0, rx)
                if kind in META_KINDS:
                    meta.add(pole_id)
                elif kind == "health":
                    health.add(pole_id)
        if full:
            meta = health = set(self.poles)
        else:
            if born:
                rows = self.reader.pick(db.POLES, {"all_poles": False, "poles": self._p(born)})
                changed |= self._apply_poles(rows)
        if meta:
            changed |= self._read_meta(sorted(meta), every=full)
        events: list[dict] = []
        if health:
            events += self._read_health(sorted(health))
        events += self._states(now)
        if changed or events or full:
            self.version += 1  # what the catalogues show changed
        if changed or events or full or meta or health or arrivals:
            self._publish()  # and the map's "last heard" moved on
        with self.events_lock:
            for e in events:
                self.event_id += 1
                e["id"] = self.event_id
                self.events.append(e)
        return events

    def _publish(self) -> None:
        poles = {}
        for pole_id, p in self.poles.items():
            q = copy.copy(p)
            q.alarms, q.alarm_since = dict(p.alarms), dict(p.alarm_since)
            poles[pole_id] = q
        keys = {k: copy.copy(v) for k, v in self.keys.items()}
        pole_keys = {pid: [keys[k.kid] for k in ks] for pid, ks in self.pole_keys.items()}
        self.view = View(poles, keys, pole_keys, self.version)

    def events_after(self, last: int) -> list[dict]:
        """The kept events with an id above ``last``."""
        with self.events_lock:
            return [e for e in self.events if e["id"] > last]

    def _p(self, poles) -> object:
        return db.poles_param(self.reader.dialect, sorted(poles))

    def _read_keys(self) -> bool:
        rows = self.reader.query(db.KEYS, {"rev": self.key_rev})
        for kid, pole_id, pk, status, added, revoked, rev in rows:
            k = Key(bytes(kid), pole_id, bytes(pk), status, db.epoch(added), db.epoch(revoked))
            self.keys[k.kid] = k
            self.key_rev = max(self.key_rev, int(rev))
            self.poles.setdefault(pole_id, Pole(pole_id))
        if rows:
            by_pole: dict[str, list[Key]] = {}
            for k in self.keys.values():
                by_pole.setdefault(k.pole_id, []).append(k)
            for keys in by_pole.values():
                keys.sort(key=lambda k: (k.status != "active", -(k.added_at or 0.0)))
            self.pole_keys = by_pole
        return bool(rows)

    def _apply_poles(self, rows: list[tuple]) -> bool:
        changed = False
        for pole_id, lat, lon, birth_at, software, sensors, window_s in rows:
            p = self.poles.setdefault(pole_id, Pole(pole_id))
            new = (lat, lon, software, sensors, window_s, db.epoch(birth_at))
            old = (p.lat, p.lon, p.software, p.sensors_text, p.window_s, p.birth_at)
            if new != old:
                p.lat, p.lon, p.software, p.sensors_text, p.window_s, p.birth_at = new
                if p.manifest is None:
                    p.series = series_of(p)
                changed = True
        return changed

    def _read_meta(self, poles: list[str], every: bool) -> bool:
        params = {"all_poles": every, "poles": self._p([] if every else poles)}
        changed = False
        for pole_id, kind, _t, rx, kid, _cti, raw in self.reader.pick(db.META, params):
            p = self.poles.setdefault(pole_id, Pole(pole_id))
            rx = db.epoch(rx)
            if kind == "birth":
                p.birth_rx = rx
            elif kind == "death":
                p.death_rx = rx
            elif kind == "manifest" and raw is not None:
                sha = hashlib.sha256(bytes(raw)).hexdigest()
                if p.manifest is None or p.manifest.sha256 != sha:
                    m = read_manifest(pole_id, bytes(raw), self.keys.get(bytes(kid)))
                    if m is not None:
                        m.received_at = rx
                        p.manifest = m
                        p.series = series_of(p)
                        changed = True
            if p.manifest is None and not p.series:
                p.series = series_of(p)
        return changed

    def _read_health(self, poles: list[str]) -> list[dict]:
        latest: dict[str, tuple[float, dict[str, str | None], bytes]] = {}
        for pole_id, t, alarm, detail, kid in self.reader.pick(
            db.HEALTH, {"poles": self._p(poles)}
        ):
            t = db.epoch(t) or 0.0
            entry = latest.setdefault(pole_id, (t, {}, bytes(kid)))
            if alarm is not None:
                entry[1][alarm] = detail
        events = []
        for pole_id, (t, alarms, kid) in latest.items():
            p = self.poles.setdefault(pole_id, Pole(pole_id))
            if p.health_t is not None and t < p.health_t:
                continue  # an older message committed late: the state stays
            p.health_t, p.health_kid = t, kid
            for name in sorted(set(alarms) - set(p.alarms)):
                p.alarm_since[name] = t
                events.append(self._alarm_event(p, name, alarms[name], True, t))
            for name in sorted(set(p.alarms) - set(alarms)):
                p.alarm_since.pop(name, None)
                events.append(self._alarm_event(p, name, p.alarms[name], False, t))
            p.alarms = alarms
        return events

    def _alarm_event(self, p: Pole, name: str, detail: str | None, raised: bool, t: float):
        return {
            "type": "alarm",
            "pole": p.pole_id,
            "alarm": name,
            "detail": detail,
            "raised": raised,
            "t": t,
            "received": p.last_heard,
        }

    def _states(self, now: float) -> list[dict]:
        events = []
        for p in self.poles.values():
            state = self.state_of(p, now)
            if state != p.state:
                p.state = state
                events.append({"type": "pole", **View({}, {}, self.pole_keys, 0).summary(p)})
        return events

    def state_of(self, p: Pole, now: float) -> str:
        keys = self.pole_keys.get(p.pole_id, ())
        if keys and all(k.status == "revoked" for k in keys):
            return "revoked"
        quiet = max(self.silent_after_s, 3 * (p.window_s or 0))
        ended = p.death_rx is not None and (p.birth_rx is None or p.death_rx > p.birth_rx)
        if p.last_heard is None or now - p.last_heard > quiet or ended:
            return "silent"
        return "alarm" if p.alarms else "ok"

"""Every kind of message a pole can send, declared once.

The privacy promise is "the audit lists everything a pole can publish, and the
traffic equals the audit". That holds only if there is one list. This is it: each
kind names its records (with units and value kinds), whether it is retained, how
often it is sent and which privacy class it belongs to. The encoders build their
records from these declarations (``pack`` refuses a record that is not declared, or a
value of another kind), the manifest's schema and ``pole-admin audit`` expand them
for a pole's configuration, the city's verifier takes the kinds and their rules from
here, and the table in docs/wire-format.md is generated from it.

The kind also travels inside the signed bytes, as the COSE ``typ`` header (RFC 9596,
label 16): a signed health message cannot be replayed on the data topic, because the
verifier checks ``typ`` against the topic (and a transport without topics, such as
the file drop, still knows what it carries).

Record names are relative to the pack's base name ``<pole_id>/``. Placeholders in
angle brackets stand for one name segment: ``<sensor>`` a configured sensor's name,
``<field>`` one of its descriptor's fields, ``<counter>`` and ``<alarm>`` health
names made by the daemon and drivers (never from sensor data).

Portable to MicroPython: plain classes and tuples.
"""

from edge import cbor, senml

# Value kinds, and the SenML label each is carried in.
FLOAT = "float"
INT = "int"
BOOL = "bool"
TEXT = "text"
BYTES = "bytes"
NUMBER = "number"  # int or float (a configured number such as epsilon)
VALUE_LABEL = {FLOAT: senml.V, INT: senml.V, NUMBER: senml.V, BOOL: senml.VB, TEXT: senml.VS}
VALUE_LABEL[BYTES] = senml.VD

FIELD_UNIT = "<unit>"  # the unit a sensor descriptor gives the field
TYP_PREFIX = "application/vnd.lightpole."
TYP_SUFFIX = "+cose"
STATS = ("mean", "min", "max")


class UndeclaredRecord(ValueError):
    """An encoder tried to emit a record its kind does not declare: a bug, caught
    before signing, so nothing undeclared can leave the pole."""


class Rec:
    """One record a kind may carry."""

    __slots__ = ("name", "unit", "value", "doc", "when", "_parts")

    def __init__(self, name, unit, value, doc, when=""):
        self.name = name
        self.unit = unit
        self.value = value
        self.doc = doc
        self.when = when  # "" = always present; else the condition, for the docs
        self._parts = name.split("/")

    def matches(self, name):
        parts = name.split("/")
        if len(parts) != len(self._parts):
            return False
        for i in range(len(parts)):  # no zip(strict=...) on MicroPython
            want, got = self._parts[i], parts[i]
            if want[:1] == "<":
                if not got or not _segment_ok(got):
                    return False
            elif want != got:
                return False
        return True


_SEGMENT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-:")


def _segment_ok(s):
    return all(c in _SEGMENT for c in s)


class Kind:
    """One kind of message."""

    __slots__ = ("name", "typ", "retained", "cadence", "privacy", "doc", "records")

    def __init__(self, name, retained, cadence, privacy, doc, records):
        self.name = name
        self.typ = TYP_PREFIX + name + TYP_SUFFIX
        self.retained = retained
        self.cadence = cadence
        self.privacy = privacy
        self.doc = doc
        self.records = records

    def spec(self, name):
        """The declaration ``name`` falls under, or None."""
        for r in self.records:
            if r.matches(name):
                return r
        return None


DATA = Kind(
    "data",
    False,
    "every window_s (clock-aligned, plus window_offset_s)",
    "public",
    "Window statistics of every public field: the only sensor values that leave the pole.",
    (
        Rec(
            "window",
            "s",
            INT,
            "seconds this window covers: window_s, or less for the first window after a "
            "start and the last before a stop (bt is the window's end)",
        ),
        Rec(
            "uptime",
            "s",
            FLOAT,
            "seconds since the daemon started; bt is then 0 (SenML relative time)",
            "the clock is not valid",
        ),
        Rec(
            "<sensor>/<field>/mean",
            FIELD_UNIT,
            FLOAT,
            "mean, at the field's resolution, within [min, max]",
        ),
        Rec("<sensor>/<field>/min", FIELD_UNIT, FLOAT, "smallest sample", "count > 0"),
        Rec("<sensor>/<field>/max", FIELD_UNIT, FLOAT, "largest sample", "count > 0"),
        Rec("<sensor>/<field>/count", "count", INT, "samples in the window (0: none)"),
    ),
)

COUNTS = Kind(
    "counts",
    False,
    "every bin_s (clock-aligned; default 15 min, never under min_bin_s)",
    "count",
    "People, bicycles (and, where lawful and enabled, unique devices) per bin, after the "
    "privacy gate: every series in every bin, small counts indistinguishable.",
    (
        Rec(
            "bin",
            "s",
            INT,
            "seconds this bin covers: bin_s, or more for the first bin after a start "
            "(a short first bin is merged into the next; bt is the bin's end)",
        ),
        Rec(
            "<sensor>/<field>/count",
            "count",
            INT,
            "the protected count: rounded to round_to, never below k; 0 when suppressed",
        ),
        Rec(
            "<sensor>/<field>/suppressed",
            None,
            BOOL,
            "true when the true count was below k (the count then reads 0, whatever it was)",
        ),
    ),
)

HEALTH = Kind(
    "health",
    False,
    "every health_s, and at once when an alarm is raised",
    "health",
    "How the pole itself is doing: sensors up, counters since boot, alarms.",
    (
        Rec("time/uptime", "s", FLOAT, "seconds since the daemon started"),
        Rec("time/valid", None, BOOL, "whether the wall clock is trusted (bt then is wall time)"),
        Rec("sensor/<sensor>/up", None, BOOL, "the sensor answers and delivers"),
        Rec("counter/<counter>", "count", INT, "a counter since boot (errors, publishes, ...)"),
        Rec("alarm/<alarm>", None, BOOL, "an alarm that is raised now (always true)"),
        Rec("alarm/<alarm>/detail", None, TEXT, "what the alarm is about (at most 200 chars)"),
    ),
)

BIRTH = Kind(
    "birth",
    True,
    "on every connection to the broker (or start of another transport)",
    "meta",
    "Who is speaking: a new session (Sparkplug-style bdSeq), its software and sensors.",
    (
        Rec(
            "bdSeq",
            None,
            INT,
            "birth/death sequence, persisted; the death that ends "
            "this session carries the same number",
        ),
        Rec("boot", None, INT, "boot counter (the high half of every cti of this run)"),
        Rec("software", None, TEXT, "software name and version"),
        Rec("sensors", None, TEXT, "name:model of every configured sensor, comma-separated"),
        Rec("window", "s", INT, "the configured window length"),
        Rec("location/lat", "lat", FLOAT, "WGS84 latitude", "a location is configured"),
        Rec("location/lon", "lon", FLOAT, "WGS84 longitude", "a location is configured"),
    ),
)

DEATH = Kind(
    "death",
    False,
    "registered as the MQTT will at connect; sent by the broker when the pole vanishes, "
    "or by the pole at a clean stop",
    "meta",
    "The end of a session. Sealed when the session starts, so its iat and bt are the "
    "connect time, not the time of death.",
    (Rec("bdSeq", None, INT, "the bdSeq of the birth this death ends"),),
)

MANIFEST = Kind(
    "manifest",
    True,
    "at every start",
    "meta",
    "The pole's privacy manifest: what each sensor measures and why, what leaves, the "
    "privacy parameters and the schema hash of everything it can publish.",
    (
        Rec("manifest/software", None, TEXT, "software name and version"),
        Rec("manifest/schema_sha256", None, TEXT, "SHA-256 of the pole's output schema"),
        Rec("privacy/window", "s", INT, "window length of the data messages"),
        Rec("privacy/bin", "s", INT, "bin length of the count messages"),
        Rec("privacy/k", None, INT, "counts below k are published as suppressed"),
        Rec("privacy/round_to", None, INT, "counts at or above k are rounded to this"),
        Rec("privacy/mode", None, TEXT, '"k" (suppression) or "dp" (plus integer noise)'),
        Rec("privacy/unique_devices", None, BOOL, "whether unique devices are counted"),
        Rec("privacy/retention", None, TEXT, "how long anything is kept on the pole"),
        Rec(
            "privacy/legal_basis",
            None,
            TEXT,
            "the stated legal basis for counting devices",
            "a personal-data sensor (probe sniffer) is enabled",
        ),
        Rec(
            "privacy/epsilon_per_bin",
            None,
            FLOAT,
            "DP epsilon spent per series per bin",
            'mode = "dp"',
        ),
        Rec("privacy/epsilon_per_day", None, FLOAT, "DP budget per day", 'mode = "dp"'),
        Rec("privacy/epsilon_remaining_today", None, FLOAT, "DP budget left today", 'mode = "dp"'),
        Rec("sensor/<sensor>/model", None, TEXT, "the sensor's model"),
        Rec("sensor/<sensor>/purpose", None, TEXT, "why the city measures it"),
        Rec("sensor/<sensor>/leaves", None, TEXT, "its fields that can leave the pole"),
    ),
)

ROTATE = Kind(
    "rotate",
    False,
    "once, after a key rotation, before anything signed with the new key",
    "meta",
    "A new key for this pole, signed by the old key, with proof of possession of the new.",
    (
        Rec("rotate/new_key", None, BYTES, "the new Ed25519 public key (32 bytes)"),
        Rec("rotate/new_kid", None, BYTES, "its key id"),
        Rec("rotate/proof", None, BYTES, "the new key's signature over the rotation statement"),
    ),
)

KINDS = (DATA, COUNTS, HEALTH, BIRTH, DEATH, MANIFEST, ROTATE)
BY_NAME = {k.name: k for k in KINDS}
BY_TYP = {k.typ: k for k in KINDS}


def kind(name):
    """The declared kind called ``name``; KeyError names the known ones."""
    k = BY_NAME.get(name)
    if k is None:
        raise KeyError("no message kind %s (known: %s)" % (name, ", ".join(BY_NAME)))
    return k


def pack(k, pole_id, bt, items):
    """A SenML-CBOR pack of kind ``k``: ``items`` are (name, value) in order.

    The first record carries bn = "<pole_id>/" and bt. Every name must be declared by
    ``k`` and every value must be of the declared kind, else ``UndeclaredRecord``:
    the encoder cannot put anything on the wire that the audit does not list.
    """
    records = []
    for name, value in items:
        spec = k.spec(name)
        if spec is None:
            raise UndeclaredRecord("%s message: record %s is not declared" % (k.name, name))
        _check_value(k, name, spec.value, value)
        pairs = [(senml.N, name)]
        if spec.unit is not None:
            if spec.unit == FIELD_UNIT:
                raise UndeclaredRecord("%s: %s takes its unit from a descriptor" % (k.name, name))
            pairs.append((senml.U, spec.unit))
        pairs.append((VALUE_LABEL[spec.value], value))
        records.append(pairs)
    if not records:
        raise UndeclaredRecord("%s message without records" % k.name)
    records[0] = [(senml.BN, pole_id + "/"), (senml.BT, bt)] + records[0]
    return cbor.dumps([cbor.Map(r) for r in records])


def _check_value(k, name, want, value):
    if want == BOOL:
        ok = value is True or value is False
    elif want == INT:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif want == FLOAT:
        ok = isinstance(value, float)
    elif want == NUMBER:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif want == TEXT:
        ok = isinstance(value, str)
    else:
        ok = isinstance(value, bytes)
    if not ok:
        raise UndeclaredRecord(
            "%s message: %s must be %s, got %s" % (k.name, name, want, type(value).__name__)
        )


def markdown_table():
    """The kinds and their records as Markdown, for docs/wire-format.md (tools/docgen)."""
    out = []
    for k in KINDS:
        out.append("### `%s`" % k.name)
        out.append("")
        retained = "retained" if k.retained else "not retained"
        out.append(k.doc)
        out.append("")
        out.append(
            "`typ` `%s`; %s; privacy class %s; sent %s." % (k.typ, retained, k.privacy, k.cadence)
        )
        out.append("")
        out.append("| record | unit | value | meaning |")
        out.append("|---|---|---|---|")
        for r in k.records:
            unit = "the field's" if r.unit == FIELD_UNIT else (r.unit or "")
            label = {2: "v", 3: "vs", 4: "vb", 8: "vd"}[VALUE_LABEL[r.value]]
            doc = r.doc + (" (only when %s)" % r.when if r.when else "")
            out.append("| `%s` | %s | %s (`%s`) | %s |" % (r.name, unit, r.value, label, doc))
        out.append("")
    return "\n".join(out).rstrip() + "\n"

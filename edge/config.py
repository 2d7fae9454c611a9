"""One TOML file per pole (``pole.toml``), and every key of it declared once, here.

A pole is configured once, at the foot of the pole or from the city's fleet tools, and
then runs unattended for years: a misspelt key that silently leaves its default in force
(``windw_s = 300``) is found, if ever, by someone wondering why a district sends five
times the traffic. So each key is declared exactly once below, as a ``Key`` in a
``Table``: name, type, default, allowed range and a one-line doc. The loader, its error
messages and the key tables of docs/config.md (``python -m tools.docgen --write``) all
derive from those declarations and cannot drift. Unknown keys are refused with the
nearest valid key suggested; a wrong type is refused with the type the key wants.

Adding a key: one ``Key(...)`` line in its table below, an annotation of the same name on
the class that carries it (``PoleConfig``, ``MqttConfig``, ...; a test checks the two
agree), any rule that spans keys in that class's ``__init__``, then
``python -m tools.docgen --write``. From Python, a key given as ``None`` counts as not set.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import tomllib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge.descriptors import DescriptorError, load_board, load_sensor
from edge.names import (
    SENSOR_RULE,
    InvalidName,
    check_id,
    check_pole_id,
    check_sensor_name,
    describe,
)

DOC = "docs/config.md"
PRIVACY_DOC = "docs/privacy.md"
DAY_S = 86400
# edge.dp.epsilon_ratio turns ε into a fraction with denominator 1000: a smaller ε is 0
# to the noise sampler, and "auto" rounds down to this step so the ledger spends exactly
# what the noise was drawn with.
EPSILON_STEP = 0.001


class ConfigError(ValueError):
    """The configuration cannot work; the message says which key to fix and how."""


# -- the declaration format ----------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A value type of pole.toml: its name in the docs, in errors, and what passes."""

    name: str
    article: str
    accepts: Callable[[object], bool]


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # true is not 1 in a config


def _is_number(v: object) -> bool:
    return _is_int(v) or (isinstance(v, float) and math.isfinite(v))  # nan passes no bound


def _is_scalar(v: object) -> bool:
    return isinstance(v, (str, bool)) or _is_number(v)


INTEGER = Kind("integer", "an integer", _is_int)
NUMBER = Kind("number", "a number", _is_number)
STRING = Kind("string", "a string", lambda v: isinstance(v, str))
BOOLEAN = Kind("boolean", "true or false", lambda v: isinstance(v, bool))
# Resolved against the config file's folder, so a pole's files can move as one folder.
PATH = Kind("path", "a path (a string)", lambda v: isinstance(v, (str, os.PathLike)))
INTEGER_OR_STRING = Kind(
    "integer or string", "an integer or a string", lambda v: _is_int(v) or isinstance(v, str)
)
SCALAR_TABLE = Kind(
    "table",
    "a table of strings, numbers and booleans",
    lambda v: (
        isinstance(v, dict) and all(isinstance(k, str) and _is_scalar(x) for k, x in v.items())
    ),
)


@dataclass(frozen=True)
class Derived:
    """A default or bound computed from keys declared earlier in the same table."""

    doc: str
    value: Callable[[dict[str, Any]], Any]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Key:
    """One key of pole.toml, declared once: the loader, errors and docs read this.

    Args:
        name: the key as written in the file.
        kind: its type (``INTEGER``, ``NUMBER``, ``STRING``, ``BOOLEAN``, ``PATH``, ...).
        default: the value when the key is absent, ``REQUIRED``, ``None`` (not set) or a
            ``Derived`` computed from keys declared before it.
        doc: one line for docs/config.md: what the key is for.
        unit: the unit a number is in ("seconds", "bytes", "degrees", "A").
        min, max: inclusive bounds (a number or a ``Derived``).
        choices: the only values allowed.
        auto: if set, the string "auto" is allowed too, and this says what it means.
        check: validates (and may normalise) a value of the right type; raises
            ``ConfigError`` or ``InvalidName``.
        rule: the docs' words for what ``check`` allows.
        example: a value for the error of a missing required key.
    """

    name: str
    kind: Kind
    default: Any
    doc: str
    unit: str = ""
    min: float | Derived | None = None
    max: float | Derived | None = None
    choices: tuple[str, ...] = ()
    auto: str = ""
    check: Callable[[Any], Any] | None = None
    rule: str = ""
    example: Any = None

    def expected(self) -> str:
        unit = f" ({self.unit})" if self.unit else ""
        return self.kind.article + unit + (' or "auto"' if self.auto else "")

    def bounds(self, values: dict[str, Any]) -> tuple[Any, Any]:
        def get(b: float | Derived | None) -> Any:
            return b.value(values) if isinstance(b, Derived) else b

        return get(self.min), get(self.max)

    def allowed(self, values: dict[str, Any] | None = None) -> str:
        """The allowed values in words; bounds that depend on other keys are named by
        those keys (docs) unless their values are given (errors)."""
        if self.choices:
            return "one of " + ", ".join(f'"{c}"' for c in self.choices)
        parts = []
        if values is not None:
            lo, hi = self.bounds(values)
        else:
            lo, hi = (b.doc if isinstance(b, Derived) else b for b in (self.min, self.max))
        if lo is not None and hi is not None:
            parts.append(f"{_fmt(lo)} to {_amount(hi, self.unit)}")
        elif lo is not None:
            parts.append(f"at least {_amount(lo, self.unit)}")
        elif hi is not None:
            parts.append(f"at most {_amount(hi, self.unit)}")
        if self.rule:
            parts.append(self.rule)
        text = "; ".join(parts)
        return f'"auto" or {text}' if self.auto and text else text

    def parse(self, raw: dict, values: dict[str, Any], where: str, base: Path) -> Any:
        q = where + self.name
        value = raw.get(self.name)
        if value is None:  # absent (or None from Python): the default
            if self.default is REQUIRED:
                eg = f", e.g. {self.name} = {toml_value(self.example)}" if self.example else ""
                raise ConfigError(f"{q} is required ({self.doc}){eg}")
            value = (
                self.default.value(values) if isinstance(self.default, Derived) else self.default
            )
            return (base / value).resolve() if self.kind is PATH and value is not None else value
        if self.auto and value == "auto":
            return value
        if not self.kind.accepts(value):
            rule = self.allowed(values)
            hint = f"; use {rule}" if rule else ""
            if self.default not in (None, REQUIRED, "") and not isinstance(self.default, Derived):
                hint += f", e.g. {self.name} = {toml_value(self.default)}"
            raise ConfigError(f"{q} must be {self.expected()}, got {_got(value)}{hint}")
        if self.kind is NUMBER:
            value = float(value)
        if self.check is not None:
            try:
                value = self.check(value)
            except InvalidName as exc:
                raise ConfigError(f"{q}: {exc}") from None
            except ConfigError as exc:
                msg = str(exc)
                raise ConfigError(msg if msg.startswith(q) else f"{q} {msg}") from None
        if self.choices and value not in self.choices:
            raise ConfigError(f"{q} must be {self.allowed()}, got {describe(value)}")
        lo, hi = self.bounds(values)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"{q} must be {self.allowed(values)}, got {_fmt(value)}")
        if self.kind is PATH:
            return (base / value).resolve()
        return value


@dataclass(frozen=True)
class Table:
    """A table of pole.toml: the top level, ``[name]`` or ``[[name]]`` (``array``)."""

    name: str
    doc: str
    keys: tuple[Key, ...]
    array: bool = False

    @property
    def header(self) -> str:
        if not self.name:
            return "the top level"
        return f"[[{self.name}]]" if self.array else f"[{self.name}]"

    def key(self, name: str) -> Key:
        return next(k for k in self.keys if k.name == name)


# -- checks that a type alone cannot express -----------------------------------------

URL_FORM = 'mqtt://HOST or mqtt://HOST:PORT (mqtts:// for TLS), e.g. "mqtt://broker.example:1883"'


def parse_broker_url(url: str) -> tuple[bool, str, int]:
    """(tls, host, port) of ``mqtt[s]://HOST[:PORT]``, nothing more and nothing less.

    Stricter than ``urllib.parse.urlsplit`` on purpose: ``mqtt:/host`` (one slash) once
    connected to 127.0.0.1:1883 without a word, and a path or a password in the URL is
    either a typo or a secret that ends up in the log.
    """

    def bad(why: str, show: bool = True) -> ConfigError:
        shown = f" {describe(url)}" if show else ""
        return ConfigError(f"mqtt.url{shown}: {why}; use {URL_FORM}")

    scheme, sep, rest = url.partition("://")
    if not sep:
        raise bad("write the scheme and two slashes before the host")
    if scheme not in ("mqtt", "mqtts"):
        raise bad("the scheme must be mqtt or mqtts (TLS)")
    if "@" in rest:
        raise bad(
            "a user or password does not belong in the URL, which is logged; set "
            "mqtt.username and mqtt.password_file",
            show=False,  # nor in this message
        )
    if rest.startswith("["):
        host, close, tail = rest[1:].partition("]")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise bad("an IPv6 address goes in brackets, e.g. mqtt://[2001:db8::1]:1883") from None
        if not close:
            raise bad("the IPv6 address lacks its closing bracket")
    else:
        end = next((i for i, c in enumerate(rest) if c in ":/?#"), len(rest))
        host, tail = rest[:end], rest[end:]
        if not host:
            raise bad("the host is missing")
        if not _is_hostname(host):
            raise bad("the host must be a name (letters, digits, '-', '.') or an IP address")
    port = 8883 if scheme == "mqtts" else 1883
    if tail.startswith(":"):
        end = next((i for i, c in enumerate(tail[1:], 1) if not _digits(c)), len(tail))
        digits, tail = tail[1:end], tail[end:]
        if not digits:
            raise bad("the port is missing after ':'")
        port = int(digits)
        if not 1 <= port <= 65535:
            raise bad("the port must be from 1 to 65535")
    if tail:
        raise bad("nothing may follow the host and port (no path, query or fragment)")
    return scheme == "mqtts", host.lower(), port


def _is_hostname(host: str) -> bool:
    labels = host.split(".")
    if all(_digits(label) for label in labels):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    ok = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
    return len(host) <= 253 and all(
        0 < len(label) <= 63 and label[0] != "-" and label[-1] != "-" and set(label) <= ok
        for label in labels
    )


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also passes '²' and other scripts' digits."""
    return bool(text) and all("0" <= c <= "9" for c in text)


def _broker_url(url: str) -> str:
    parse_broker_url(url)
    return url


def _schedule(text: str) -> str:
    """HH:MM-HH:MM, as edge.watch.commanded_by_schedule reads it."""
    on, dash, off = text.partition("-")
    for hhmm in (on, off):
        h, colon, m = hhmm.partition(":")
        if not (dash and colon and _digits(h) and len(h) <= 2 and _digits(m) and len(m) == 2):
            raise ConfigError(f'must be "HH:MM-HH:MM" (on-off, local time), got {describe(text)}')
        if not (int(h) < 24 and int(m) < 60):
            raise ConfigError(f"{describe(text)}: hours 0-23, minutes 0-59")
    return text


def _model(model: str) -> str:
    try:
        return check_sensor_name(model)  # also a file name in hardware/sensors/
    except InvalidName:
        raise ConfigError(f"{describe(model)} is not a model name: use {SENSOR_RULE}") from None


def _min_bin(seconds: int) -> int:
    return max(60, seconds)  # a floor under the floor: shorter bins re-identify people


def _synchronous(mode: str) -> str:
    return mode.upper()


# -- the declarations ----------------------------------------------------------------
# fmt: off

POLE = Table(
    "",
    "The pole itself: who it is, how often it speaks, where it keeps its state.",
    (
        Key("pole_id", STRING, REQUIRED, "the pole's id: its MQTT topic level, broker user and "
            "key's pole", check=check_pole_id, rule="letters, digits, '-'",
            example="nl-ex-0001"),
        Key("board", STRING, None, "a board profile in hardware/boards/ whose sensors are used "
            "when there is no [[sensors]]", check=lambda b: check_id(b, "board"),
            rule="letters, digits, '-'"),
        Key("state_dir", PATH, "state", "the pole's key (0600), counters, spool and ledger"),
        Key("hardware_dir", PATH, None, "sensor descriptors and board profiles (default: the "
            "installed hardware/)"),
        Key("window_s", INTEGER, 60, "length of a measurement window", unit="seconds",
            min=1, max=DAY_S),
        Key("health_s", INTEGER, Derived("max(window_s, 10)", lambda v: max(v["window_s"], 10)),
            "interval of health messages", unit="seconds", min=1),
        Key("window_offset_s", INTEGER, 0, "windows start this long after each multiple of "
            "window_s, so a district's poles do not all publish in the same second",
            unit="seconds", min=0, max=Derived("window_s - 1", lambda v: v["window_s"] - 1),
            auto="an offset derived from pole_id"),
        Key("transport", STRING, "mqtt", "how signed messages leave: to the broker, or as "
            "files for an air gap ([file_drop])", choices=("mqtt", "file")),
        Key("clock_sync_file", STRING, None, "a file that exists once the clock is synchronised "
            "(e.g. /run/systemd/timesync/synchronized)"),
        Key("spool_max_bytes", INTEGER, 64 * 1024 * 1024, "largest spool of unsent messages "
            "(64 MiB); the oldest go first", unit="bytes", min=0),
        Key("spool_synchronous", STRING, "FULL", "FULL: every message survives a power cut; "
            "NORMAL: a crash only (simulated fleets)", choices=("FULL", "NORMAL"),
            check=_synchronous),
        Key("driver_timeout_s", NUMBER, 2.0, "a driver call that takes longer is abandoned and "
            "the sensor restarted (0: no isolation thread)", unit="seconds", min=0),
    ),
)

MQTT = Table(
    "mqtt",
    "The broker connection.",
    (
        Key("url", STRING, "mqtt://127.0.0.1:1883", "the broker", check=_broker_url,
            rule="mqtt://HOST[:PORT] or mqtts://HOST[:PORT]; default port 1883, TLS 8883"),
        Key("username", STRING, None, "broker user, normally the pole id"),
        Key("password", STRING, None, "broker password; prefer password_file"),
        Key("password_file", STRING, None, "a 0600 file holding the password (written by "
            "'pole-admin broker add-pole')"),
        Key("ca_file", STRING, None, "CA certificate that signed the broker's (mqtts)"),
        Key("cert_file", STRING, None, "client certificate, for brokers that require one"),
        Key("key_file", STRING, None, "the client certificate's key"),
        Key("topic_prefix", STRING, "poles", "first level of every topic: <prefix>/<pole>/<kind>",
            check=lambda p: check_id(p, "topic prefix"), rule="one topic level"),
        Key("keepalive", INTEGER, 30, "MQTT keep-alive", unit="seconds", min=0, max=65535),
        Key("will_delay_s", INTEGER, 10, "how long the broker waits before announcing the "
            "pole's death (a quick reconnect sends none)", unit="seconds", min=0),
    ),
)

FILE_DROP = Table(
    "file_drop",
    'The air-gapped transport (transport = "file").',
    (Key("dir", PATH, "file-drop", "where each signed message is written as one file"),),
)

PRIVACY = Table(
    "privacy",
    f"How counts leave the pole ({PRIVACY_DOC}).",
    (
        Key("min_bin_s", INTEGER, 60, "shortest count bin this pole may be set to",
            unit="seconds", check=_min_bin, rule="below 60 counts as 60"),
        Key("bin_s", INTEGER, 900, "length of a count bin", unit="seconds",
            min=Derived("min_bin_s", lambda v: v["min_bin_s"])),
        Key("k", INTEGER, 10, 'counts below k are published as "<k"', min=1),
        Key("round_to", INTEGER, 5, "larger counts are rounded to a multiple of this", min=1),
        Key("mode", STRING, "k", '"k": suppression only; "dp": differential privacy, noise '
            "within a daily budget", choices=("k", "dp")),
        Key("epsilon", NUMBER, "auto", "ε per bin and count series in dp mode",
            min=EPSILON_STEP, auto="daily_epsilon shared by every bin of the day and every "
            "count series"),
        Key("daily_epsilon", NUMBER, 24.0, "ε budget per UTC day, all series together",
            min=EPSILON_STEP),
        Key("unique_devices", BOOLEAN, False, "count unique devices per bin (needs a sensor "
            "with personal data, hence legal_basis)"),
        Key("retention", STRING, "spool: until acknowledged, at most 14 days", "what the "
            "manifest states about retention"),
        Key("legal_basis", STRING, "", "the legal basis for sensors that read personal data "
            "(Wi-Fi/BLE probes); without it they are refused"),
    ),
)

ALARMS = Table(
    "alarms",
    "Thresholds of the pole's alarms.",
    (Key("tilt_max_deg", NUMBER, 5.0, "pole_tilted when an LIS3DH leans further",
         unit="degrees", min=0, max=90),),
)

LAMP = Table(
    "lamp",
    "The lamp check (optional): lamp_failed when the current does not match the command.",
    (
        Key("nominal_current", NUMBER, REQUIRED, "the lamp's current when on", unit="A",
            min=0, example=0.5),
        Key("sensor", STRING, "ina219", "the current sensor's name (an INA219/INA226)",
            check=check_sensor_name),
        Key("commanded_file", STRING, None, "a file where the luminaire controller writes 1 "
            "(on) or 0 (off); else the schedule"),
        Key("schedule", STRING, "17:00-07:30", "on-off, local time, when there is no "
            "commanded_file", check=_schedule, rule='"HH:MM-HH:MM"'),
        Key("debounce_s", NUMBER, 5.0, "how long a mismatch lasts before it is an alarm",
            unit="seconds", min=0),
        Key("test_by_day", BOOLEAN, True, "switch the lamp on by day through the luminaire's "
            "DALI bridge (a d4i sensor), at start and once a day, to prove it burns"),
        Key("test_s", NUMBER, 30.0, "the longest the lamp test keeps the lamp on: it "
            "switches back as soon as the lamp watch decides (two seconds of settling plus "
            "debounce_s), and a lamp still undecided then fails", unit="seconds", min=5,
            max=120),
    ),
)

LOCATION = Table(
    "location",
    "Where the pole stands (optional; set by provisioning, published in the birth message).",
    (
        Key("lat", NUMBER, REQUIRED, "latitude, WGS84", unit="degrees", min=-90, max=90,
            example=52.37),
        Key("lon", NUMBER, REQUIRED, "longitude, WGS84", unit="degrees", min=-180, max=180,
            example=4.9),
    ),
)

SENSORS = Table(
    "sensors",
    "One entry per sensor; without any, the board's sensors.",
    (
        Key("model", STRING, REQUIRED, "a descriptor in hardware/sensors/", check=_model,
            rule="lower-case letters, digits, '_'", example="bme280"),
        Key("name", STRING, Derived("model", lambda v: v["model"]), "unique on the pole; "
            "the first part of its SenML names", check=check_sensor_name,
            rule="lower-case letters, digits, '_'"),
        Key("port", STRING, None, "serial device of a UART sensor, e.g. /dev/ttyUSB0"),
        Key("i2c_bus", INTEGER_OR_STRING, None, "the N of /dev/i2c-N of an I2C sensor"),
        Key("address", INTEGER, None, "I2C address (default: the descriptor's)", min=0,
            max=0x7F),
        Key("options", SCALAR_TABLE, {}, "handed to the driver as keyword arguments, e.g. "
            "baud"),
    ),
    array=True,
)

# fmt: on
TABLES: tuple[Table, ...] = (POLE, MQTT, FILE_DROP, PRIVACY, ALARMS, LAMP, LOCATION, SENSORS)
_SUBTABLES = {t.name: t for t in TABLES if t.name}


# -- the loader ----------------------------------------------------------------------


def parse_table(table: Table, raw: object, where: str = "", base: Path | None = None) -> dict:
    """The declared keys of ``table`` from ``raw``: checked, defaulted, and nothing else."""
    label = where.rstrip(".") or "the configuration"
    if not isinstance(raw, dict):
        raise ConfigError(f"{label} must be a table, got {_got(raw)}")
    extra = set(_SUBTABLES) if table is POLE else set()
    for name in raw:
        if name not in extra and not any(k.name == name for k in table.keys):
            raise ConfigError(unknown_key(table, name, where))
    values: dict[str, Any] = {}
    for key in table.keys:
        values[key.name] = key.parse(raw, values, where, base or Path.cwd())
    return values


def unknown_key(table: Table, name: object, where: str = "") -> str:
    """The sentence for a key ``table`` does not declare: the nearest key it does, or the
    table a key of that name belongs to (a key below a [table] header is in that table)."""
    q = where + _show(name)
    own = [k.name for k in table.keys] + (list(_SUBTABLES) if table is POLE else [])
    not_here = "not a top-level key" if table is POLE else f"not a key of {table.header}"
    if isinstance(name, str):
        homes = [t for t in TABLES if t is not table and any(k.name == name for k in t.keys)]
        if homes and homes[0] is POLE:
            return (
                f"{q} is {not_here}; {name} belongs at the top of the file, before the "
                "first [table] header"
            )
        close = difflib.get_close_matches(name, own, n=1)
        if close:
            return f"{q} is not a key; did you mean {where}{close[0]}?"
        if homes:
            return f"{q} is {not_here}; did you mean {homes[0].name}.{name} (in {homes[0].header})?"
    return f"{q} is not a key; the keys of {table.header} are {', '.join(own)} (see {DOC})"


def _show(name: object) -> str:
    """A key as typed, if it is plain; else a bounded description (never raw bytes)."""
    if isinstance(name, str) and 0 < len(name) <= 64 and all(" " < c <= "~" for c in name):
        return name
    return describe(name)


def _fill(obj: object, table: Table, raw: object, where: str, base: Path | None) -> None:
    for name, value in parse_table(table, raw, where, base).items():
        setattr(obj, name, value)


class SensorConfig:
    """One [[sensors]] entry: which model, under which name, on which bus."""

    model: str
    name: str
    port: str | None
    i2c_bus: int | str | None
    address: int | None
    options: dict[str, Any]

    def __init__(self, d: dict, *, where: str = "sensors.") -> None:
        _fill(self, SENSORS, d, where, None)
        self.options = dict(self.options)


class MqttConfig:
    """[mqtt]: the broker, and how the pole proves who it is to it."""

    url: str
    username: str | None
    password: str | None
    password_file: str | None
    ca_file: str | None
    cert_file: str | None
    key_file: str | None
    topic_prefix: str
    keepalive: int
    will_delay_s: int

    def __init__(self, d: dict) -> None:
        _fill(self, MQTT, d, "mqtt.", None)
        self.tls, self.host, self.port = parse_broker_url(self.url)
        self.username = self.username or None
        self.password = self.password or None


class FileDropConfig:
    """[file_drop]: the air-gapped transport's folder."""

    dir: Path

    def __init__(self, d: dict, base_dir: Path | None = None) -> None:
        _fill(self, FILE_DROP, d, "file_drop.", base_dir)


class PrivacyConfig:
    """[privacy]: how counts leave the pole (docs/privacy.md)."""

    min_bin_s: int
    bin_s: int
    k: int
    round_to: int
    mode: str
    epsilon: float | Literal["auto"]
    daily_epsilon: float
    unique_devices: bool
    retention: str
    legal_basis: str

    def __init__(self, d: dict) -> None:
        _fill(self, PRIVACY, d, "privacy.", None)
        if self.mode == "dp":
            self.epsilon_for(1)  # at least one series must last the day; the rest at start

    @property
    def bins_per_day(self) -> int:
        """The most bins a UTC day can hold. Bins align to the epoch and the ledger books
        a bin on the day it starts, so a day holds ceil(86400 / bin_s) of them when bin_s
        does not divide a day (and exactly 86400 / bin_s when it does)."""
        return -(-DAY_S // self.bin_s)

    def epsilon_for(self, n_series: int) -> float:
        """ε per bin and count series, so that the day's budget covers every bin of the
        day: a series that goes dark at 10:00 is worse than one with a little more noise.

        "auto": daily_epsilon / bins_per_day / n_series, rounded down to the noise
        sampler's step. An explicit epsilon that cannot last the day is a ConfigError
        naming the largest that would. ``n_series`` is known only with the descriptors
        (the daemon's count series); with none, nothing is spent and one is assumed.
        """
        n, bins, daily = max(1, n_series), self.bins_per_day, self.daily_epsilon
        fits = math.floor(daily / bins / n / EPSILON_STEP + 1e-9) * EPSILON_STEP
        series = f"{n} count series" if n > 1 else "1 count series"
        if self.epsilon == "auto":
            if fits < EPSILON_STEP:
                raise ConfigError(
                    f"privacy.daily_epsilon {_fmt(daily)} cannot cover {bins} bins a day × "
                    f"{series} at the smallest ε of {EPSILON_STEP} per bin; raise "
                    f"privacy.daily_epsilon or privacy.bin_s (see {PRIVACY_DOC})"
                )
            return round(fits, 3)
        spend = self.epsilon * bins * n
        if spend > daily * (1 + 1e-9):
            fix = (
                f'set privacy.epsilon = {_fmt(round(fits, 3))} or less, or "auto"'
                if fits >= EPSILON_STEP
                else "raise privacy.daily_epsilon or privacy.bin_s"
            )
            raise ConfigError(
                f"privacy.epsilon {_fmt(self.epsilon)} cannot last a day: {bins} bins × "
                f"{series} × {_fmt(self.epsilon)} = {_fmt(spend)} > privacy.daily_epsilon "
                f"{_fmt(daily)}, so the counts would go dark before midnight; {fix} "
                f"(see {PRIVACY_DOC})"
            )
        return self.epsilon


class PoleConfig:
    """The whole pole.toml. Relative paths are resolved against ``base_dir`` (the config
    file's folder; the working directory if not given)."""

    pole_id: str
    board: str | None
    state_dir: Path
    hardware_dir: Path | None
    window_s: int
    health_s: int
    window_offset_s: int
    transport: str
    clock_sync_file: str | None
    spool_max_bytes: int
    spool_synchronous: str
    driver_timeout_s: float
    mqtt: MqttConfig
    file_drop: FileDropConfig
    privacy: PrivacyConfig
    tilt_max_deg: float  # [alarms]
    lamp: dict[str, Any]  # [lamp] with its defaults filled in; {} when there is none
    location: tuple[float, float] | None  # [location] (lat, lon)
    sensors: list[SensorConfig]

    def __init__(self, d: dict, base_dir: Path | None = None) -> None:
        base = base_dir or Path.cwd()
        _fill(self, POLE, d, "", base)
        if self.window_offset_s == "auto":  # stable per pole, spread over a district
            self.window_offset_s = zlib.crc32(self.pole_id.encode()) % self.window_s
        self.mqtt = MqttConfig(_table(d, "mqtt"))
        self.file_drop = FileDropConfig(_table(d, "file_drop"), base)
        self.privacy = PrivacyConfig(_table(d, "privacy"))
        self.tilt_max_deg = parse_table(ALARMS, _table(d, "alarms"), "alarms.")["tilt_max_deg"]
        lamp = _table(d, "lamp")
        self.lamp = {} if lamp == {} else parse_table(LAMP, lamp, "lamp.")
        loc = _table(d, "location")
        self.location = None
        if loc != {}:
            values = parse_table(LOCATION, loc, "location.")
            self.location = (values["lat"], values["lon"])
        self.sensors = self._sensors(d.get("sensors"))
        self._refuse_personal_without_legal_basis()

    def _sensors(self, entries: object) -> list[SensorConfig]:
        where = "sensors"
        if entries is None and self.board:
            try:
                entries = load_board(self.board, self.hardware_dir).get("sensors", [])
            except DescriptorError as exc:
                raise ConfigError(f"board: {exc}") from None
            where = f"board {self.board}: sensors"
        if entries is None:
            return []
        if not isinstance(entries, list):
            raise ConfigError(
                f"sensors must be an array of tables ([[sensors]]), got {_got(entries)}"
            )
        sensors = [SensorConfig(e, where=f"{where}[{i}].") for i, e in enumerate(entries, 1)]
        names = [s.name for s in sensors]
        if len(set(names)) != len(names):
            raise ConfigError(
                f'sensor names must be unique; give duplicates a name = "...": {names}'
            )
        return sensors

    def _refuse_personal_without_legal_basis(self) -> None:
        """Wi-Fi/BLE probe counting is off unless the operator names its legal basis: the
        Dutch DPA holds Wi-Fi tracking almost always unlawful (Amsterdam stopped in 2019)."""
        for s in self.sensors:
            try:
                desc = load_sensor(s.model, self.hardware_dir)
            except DescriptorError as exc:
                raise ConfigError(f"sensor {s.name}: {exc}") from None
            personal = [k for k, f in desc.fields.items() if f.privacy == "personal"]
            if personal and not self.privacy.legal_basis.strip():
                raise ConfigError(
                    f"sensor {s.name} (model {s.model}) reads personal data "
                    f"({', '.join(personal)}), so it runs only when [privacy] legal_basis names "
                    'the legal basis, e.g. legal_basis = "municipal bylaw ... art. ...". Wi-Fi '
                    f"tracking is almost always unlawful: read {PRIVACY_DOC} first, or remove "
                    "the sensor (a radar counts people without personal data)"
                )


def _table(d: dict, name: str) -> dict:
    value = d.get(name)
    return {} if value is None else value


def load_config(path: Path) -> PoleConfig:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return PoleConfig(data, base_dir=path.parent)


# -- words ---------------------------------------------------------------------------


def _fmt(v: object) -> str:
    """A number for a sentence: 24 rather than 24.0, 23.904 rather than 23.904000000000003."""
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:.6g}"
    return str(v)


def _amount(n: object, unit: str) -> str:
    if not unit:
        return _fmt(n)
    if n == 1 and unit.endswith("s"):
        unit = unit[:-1]  # 1 second, 1 byte
    return f"{_fmt(n)} {unit}"


def _got(v: object) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a decimal number" if math.isfinite(v) else "a number that is not finite"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, dict):
        return "a table" + ("" if _is_scalar_table(v) else " with tables or arrays in it")
    if isinstance(v, list):
        return "an array"
    return describe(v)


def _is_scalar_table(v: dict) -> bool:
    return all(_is_scalar(x) for x in v.values())


def toml_value(v: object) -> str:
    """``v`` as written in pole.toml (for examples in errors and docs)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    return repr(v) if isinstance(v, float) else str(v)


def _cell(text: str) -> str:
    """Text for a Markdown table cell: a '|' would end the cell, a '<' may start HTML."""
    return text.replace("|", "\\|").replace("<", "&lt;")


def markdown_tables() -> str:
    """Every table and key as Markdown: the generated part of docs/config.md."""
    out = []
    for t in TABLES:
        title = t.header if t.name else "Top level (before the first [table] header)"
        out.append(f"### {title}\n\n{t.doc}\n")
        out.append("| key | type | default | allowed | what it is for |")
        out.append("|---|---|---|---|---|")
        for k in t.keys:
            unit = f" ({k.unit})" if k.unit else ""
            kind = k.kind.name + unit + (' or `"auto"`' if k.auto else "")
            if k.default is REQUIRED:
                default = "**required**"
            elif isinstance(k.default, Derived):
                default = f"`{k.default.doc}`"
            elif k.default is None:
                default = "not set"
            else:
                default = f"`{toml_value(k.default)}`"
            allowed = k.allowed()
            if k.auto:
                allowed = allowed.replace('"auto" or ', "")
                allowed = (allowed + "; " if allowed else "") + f'`"auto"`: {k.auto}'
            cells = (f"`{k.name}`", kind, default, allowed, k.doc)
            out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"

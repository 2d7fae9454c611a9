"""One TOML file per pole. Everything has a sane default except the pole id.

Example (also in docs/config.md)::

    pole_id = "nl-ex-0001"
    state_dir = "/var/lib/lightpole"
    board = "linux-controller"      # sensors from hardware/boards/<board>.json ...
    window_s = 60
    window_offset_s = "auto"        # optional: spread a district's windows (default 0)

    [mqtt]
    url = "mqtt://broker.example:1883"

    [[sensors]]                     # ... or listed here (these win over the board's)
    model = "bme280"
    i2c_bus = 1
    address = 0x76
"""

from __future__ import annotations

import re
import tomllib
import zlib
from pathlib import Path
from urllib.parse import urlsplit

from edge.descriptors import load_board

POLE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")


class ConfigError(ValueError):
    """The configuration cannot work; the message says which key to fix and how."""


class SensorConfig:
    def __init__(self, d: dict) -> None:
        try:
            self.model = str(d["model"])
        except KeyError:
            raise ConfigError(
                'every [[sensors]] entry needs a model, e.g. model = "bme280"'
            ) from None
        self.name = str(d.get("name", self.model))
        if not re.match(r"^[a-z0-9][a-z0-9_]*$", self.name):
            raise ConfigError(f"sensor name {self.name!r}: use lower-case letters, digits, _")
        self.port = d.get("port")
        self.i2c_bus = d.get("i2c_bus")
        self.address = d.get("address")
        self.options = dict(d.get("options", {}))


class MqttConfig:
    def __init__(self, d: dict) -> None:
        self.url = d.get("url", "mqtt://127.0.0.1:1883")
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ConfigError(f"mqtt.url {self.url!r}: use mqtt://HOST:PORT or mqtts://HOST:PORT")
        self.tls = parts.scheme == "mqtts"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (8883 if self.tls else 1883)
        self.username = d.get("username") or parts.username
        self.password = d.get("password") or parts.password
        # Keep the secret out of the TOML: a 0600 file written by 'pole-admin broker add-pole'.
        self.password_file = d.get("password_file")
        self.ca_file = d.get("ca_file")
        self.cert_file = d.get("cert_file")
        self.key_file = d.get("key_file")
        self.topic_prefix = d.get("topic_prefix", "poles")
        self.keepalive = int(d.get("keepalive", 30))
        self.will_delay_s = int(d.get("will_delay_s", 10))


class PrivacyConfig:
    """[privacy]: how counts leave the pole (docs/privacy.md)."""

    def __init__(self, d: dict) -> None:
        self.bin_s = int(d.get("bin_s", 900))
        self.min_bin_s = max(60, int(d.get("min_bin_s", 60)))
        if self.bin_s < self.min_bin_s:
            raise ConfigError(f"privacy.bin_s must be at least {self.min_bin_s} s")
        self.k = int(d.get("k", 10))
        self.round_to = int(d.get("round_to", 5))
        if self.k < 1 or self.round_to < 1:
            raise ConfigError("privacy.k and privacy.round_to must be positive")
        self.mode = d.get("mode", "k")  # "k": suppression only; "dp": plus noise
        if self.mode not in ("k", "dp"):
            raise ConfigError('privacy.mode is "k" or "dp"')
        self.epsilon = float(d.get("epsilon", 1.0))  # per bin per series
        self.daily_epsilon = float(d.get("daily_epsilon", 24.0))
        self.unique_devices = bool(d.get("unique_devices", False))
        self.retention = str(d.get("retention", "spool: until acknowledged, at most 14 days"))


class PoleConfig:
    def __init__(self, d: dict, base_dir: Path | None = None) -> None:
        base = base_dir or Path.cwd()
        try:
            self.pole_id = str(d["pole_id"])
        except KeyError:
            raise ConfigError('pole_id is required, e.g. pole_id = "nl-ex-0001"') from None
        if not POLE_ID_RE.match(self.pole_id):
            raise ConfigError(
                f"pole_id {self.pole_id!r}: use letters, digits and '-', "
                "starting with a letter or digit"
            )
        self.state_dir = (base / d.get("state_dir", "state")).resolve()
        hw = d.get("hardware_dir")
        self.hardware_dir = (base / hw).resolve() if hw else None
        self.window_s = int(d.get("window_s", 60))
        if not 1 <= self.window_s <= 86400:
            raise ConfigError("window_s must be between 1 and 86400 seconds")
        self.health_s = int(d.get("health_s", max(self.window_s, 10)))
        # Windows start at whole multiples of window_s plus this offset. "auto": an offset
        # derived from the pole id, so a district's poles do not all publish in the same
        # second (the broker and the platform see a steady stream instead of a burst).
        offset = d.get("window_offset_s", 0)
        if offset == "auto":
            offset = zlib.crc32(self.pole_id.encode()) % self.window_s
        if not isinstance(offset, int) or not 0 <= offset < self.window_s:
            raise ConfigError(
                f'window_offset_s must be "auto" or whole seconds from 0 to {self.window_s - 1}'
            )
        self.window_offset_s = offset
        self.board = d.get("board")
        # [location] lat/lon (WGS84 degrees), set by provisioning; published in the birth
        # message so the city's platform places the pole on the map without a lookup.
        loc = d.get("location") or {}
        self.location: tuple[float, float] | None = None
        if loc:
            try:
                lat, lon = float(loc["lat"]), float(loc["lon"])
            except (KeyError, TypeError, ValueError):
                raise ConfigError("[location] needs lat and lon in degrees") from None
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ConfigError(f"[location] lat {lat}, lon {lon}: out of range")
            self.location = (lat, lon)
        # e.g. /run/systemd/timesync/synchronized: required as well as a plausible date
        self.clock_sync_file = d.get("clock_sync_file")
        self.spool_max_bytes = int(d.get("spool_max_bytes", 64 * 1024 * 1024))
        # FULL: every message survives a power cut (the default, for real poles).
        # NORMAL: survives a crash of the process, not of the machine; for simulated
        # fleets, where hundreds of poles share one disk and one thread.
        self.spool_synchronous = str(d.get("spool_synchronous", "FULL")).upper()
        # A driver call that takes longer is abandoned and the sensor restarted (0: no
        # isolation; saves a thread per sensor in large simulated fleets).
        self.driver_timeout_s = float(d.get("driver_timeout_s", 2.0))
        self.mqtt = MqttConfig(d.get("mqtt", {}))
        self.privacy = PrivacyConfig(d.get("privacy", {}))
        alarms = d.get("alarms", {})
        self.tilt_max_deg = float(alarms.get("tilt_max_deg", 5.0))
        # [lamp]: sensor (an INA219/INA226 name), nominal_current (A), and where the
        # commanded state comes from: commanded_file, or schedule = "17:00-07:30".
        self.lamp = dict(d.get("lamp", {}))
        if self.lamp and "nominal_current" not in self.lamp:
            raise ConfigError("[lamp] needs nominal_current (the lamp's current when on, in A)")
        sensors = d.get("sensors")
        if sensors is None and self.board:
            sensors = load_board(self.board, self.hardware_dir).get("sensors", [])
        self.sensors = [SensorConfig(s) for s in sensors or []]
        names = [s.name for s in self.sensors]
        if len(set(names)) != len(names):
            raise ConfigError(
                f'sensor names must be unique; give duplicates a name = "...": {names}'
            )


def load_config(path: Path) -> PoleConfig:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return PoleConfig(data, base_dir=path.parent)

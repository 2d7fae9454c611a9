"""pole.toml: every key declared once, unknown keys and wrong types refused with a
sentence that says what to write instead, and the old defaults kept."""

from __future__ import annotations

import json
import math
import re
import string
import tomllib
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.config import (
    BOOLEAN,
    INTEGER,
    INTEGER_OR_STRING,
    NUMBER,
    PATH,
    POLE,
    PRIVACY,
    REQUIRED,
    SCALAR_TABLE,
    STRING,
    TABLES,
    ConfigError,
    Derived,
    FileDropConfig,
    Key,
    MqttConfig,
    PoleConfig,
    PrivacyConfig,
    SensorConfig,
    Table,
    load_config,
    markdown_tables,
    parse_broker_url,
)

ROOT = Path(__file__).resolve().parent.parent
ID = "nl-ex-0001"
WHERE = {"": "", "sensors": "sensors[1]."}  # how a key of each table is named in errors


def pole(**kw: object) -> PoleConfig:
    return PoleConfig({"pole_id": ID, **kw})


def refused(match: str | None, **kw: object) -> str:
    with pytest.raises(ConfigError, match=match) as exc:
        pole(**kw)
    return str(exc.value)


def place(table: Table, raw: dict) -> dict:
    """A config with ``raw`` as the content of ``table`` (plus what that table needs)."""
    if not table.name:
        return {"pole_id": ID, **raw}
    if table.array:
        return {"pole_id": ID, table.name: [{"model": "bme280", **raw}]}
    if table.name == "lamp":
        raw = {"nominal_current": 0.5, **raw}
    if table.name == "location":
        raw = {"lat": 52.0, "lon": 4.0, **raw}
    return {"pole_id": ID, table.name: raw}


def where(table: Table) -> str:
    return WHERE.get(table.name, table.name + ".")


ALL_KEYS = [(t, k) for t in TABLES for k in t.keys]
KEY_IDS = [f"{t.name or 'top'}.{k.name}" for t, k in ALL_KEYS]


# -- the old defaults, key by key ----------------------------------------------------


def test_defaults_are_the_old_ones(tmp_path):
    c = PoleConfig({"pole_id": ID}, base_dir=tmp_path)
    assert c.pole_id == ID and c.board is None and c.hardware_dir is None
    assert c.state_dir == (tmp_path / "state").resolve()
    assert (c.window_s, c.health_s, c.window_offset_s) == (60, 60, 0)
    assert c.clock_sync_file is None
    assert c.spool_max_bytes == 64 * 1024 * 1024 and c.spool_synchronous == "FULL"
    assert c.driver_timeout_s == 2.0 and isinstance(c.driver_timeout_s, float)
    assert c.tilt_max_deg == 5.0 and c.lamp == {} and c.location is None and c.sensors == []
    m = c.mqtt
    assert (m.url, m.tls, m.host, m.port) == ("mqtt://127.0.0.1:1883", False, "127.0.0.1", 1883)
    assert (m.username, m.password, m.password_file) == (None, None, None)
    assert (m.ca_file, m.cert_file, m.key_file) == (None, None, None)
    assert (m.topic_prefix, m.keepalive, m.will_delay_s) == ("poles", 30, 10)
    p = c.privacy
    assert (p.bin_s, p.min_bin_s, p.k, p.round_to, p.mode) == (900, 60, 10, 5, "k")
    assert p.daily_epsilon == 24.0 and p.unique_devices is False
    assert p.retention == "spool: until acknowledged, at most 14 days"
    # new keys
    assert c.transport == "mqtt" and c.file_drop.dir == (tmp_path / "file-drop").resolve()
    assert p.epsilon == "auto" and p.legal_basis == ""


def test_health_follows_the_window_unless_set():
    assert pole(window_s=5).health_s == 10
    assert pole(window_s=300).health_s == 300
    assert pole(window_s=300, health_s=7).health_s == 7


def test_auto_offset_is_the_crc_of_the_pole_id():
    assert pole(window_offset_s="auto", window_s=60).window_offset_s == zlib.crc32(ID.encode()) % 60


def test_min_bin_never_below_a_minute_and_bins_never_below_it():
    assert PrivacyConfig({"min_bin_s": 10}).min_bin_s == 60
    assert PrivacyConfig({"min_bin_s": 300, "bin_s": 300}).bin_s == 300
    with pytest.raises(ConfigError, match="privacy.bin_s must be at least 60 seconds, got 30"):
        PrivacyConfig({"bin_s": 30})
    with pytest.raises(ConfigError, match="at least 300 seconds"):
        PrivacyConfig({"min_bin_s": 300, "bin_s": 120})
    for bad in ({"k": 0}, {"round_to": 0}, {"mode": "x"}):
        with pytest.raises(ConfigError):
            PrivacyConfig(bad)


def test_mqtts_defaults_to_8883_and_spool_mode_is_case_insensitive():
    m = MqttConfig({"url": "mqtts://Broker.Example"})
    assert (m.tls, m.host, m.port) == (True, "broker.example", 8883)
    assert MqttConfig({"username": ""}).username is None  # empty means not set, as before
    assert pole(spool_synchronous="normal").spool_synchronous == "NORMAL"


def test_paths_resolve_against_the_config_file(tmp_path):
    f = tmp_path / "etc" / "pole.toml"
    f.parent.mkdir()
    f.write_text(
        f'pole_id = "{ID}"\nstate_dir = "st"\nhardware_dir = "../hw"\n'
        'transport = "file"\n[file_drop]\ndir = "out"\n'
    )
    c = load_config(f)
    assert c.state_dir == (f.parent / "st").resolve()
    assert c.hardware_dir == (tmp_path / "hw").resolve()
    assert c.transport == "file" and c.file_drop.dir == (f.parent / "out").resolve()
    assert PoleConfig({"pole_id": ID, "state_dir": "/abs"}, base_dir=tmp_path).state_dir == Path(
        "/abs"
    )


def test_load_config_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "pole.toml"
    bad.write_text("pole_id = \n")
    with pytest.raises(ConfigError, match=re.escape(str(bad))):
        load_config(bad)


def test_lamp_location_and_alarms():
    c = pole(lamp={"nominal_current": 0.4}, location={"lat": 52, "lon": 4.9})
    assert c.lamp == {
        "nominal_current": 0.4,
        "sensor": "ina219",
        "commanded_file": None,
        "schedule": "17:00-07:30",
        "debounce_s": 5.0,
        "test_by_day": True,
        "test_s": 30.0,
    }
    assert c.location == (52.0, 4.9) and all(isinstance(x, float) for x in c.location)
    assert pole(lamp={}).lamp == {} and pole(location={}).location is None
    refused(r"lamp.nominal_current is required .*nominal_current = 0.5", lamp={"sensor": "ina219"})
    refused(r"location.lon is required", location={"lat": 52})
    refused(r"location.lat must be -90 to 90 degrees, got 91", location={"lat": 91, "lon": 0})
    refused(r'lamp.schedule must be "HH:MM-HH:MM"', lamp={"nominal_current": 1, "schedule": "5pm"})
    refused(r"hours 0-23", lamp={"nominal_current": 1, "schedule": "17:00-24:00"})
    assert pole(alarms={"tilt_max_deg": 2}).tilt_max_deg == 2.0


def test_sensors_come_from_the_board_unless_listed():
    c = pole(board="linux-controller")
    board = json.loads((ROOT / "hardware" / "boards" / "linux-controller.json").read_text())
    assert [(s.model, s.port, s.i2c_bus, s.address) for s in c.sensors] == [
        (e["model"], e.get("port"), e.get("i2c_bus"), e.get("address")) for e in board["sensors"]
    ]
    assert [s.name for s in c.sensors] == [s.model for s in c.sensors]
    c = pole(board="linux-controller", sensors=[{"model": "bme280", "i2c_bus": "sim"}])
    assert [s.model for s in c.sensors] == ["bme280"] and c.sensors[0].i2c_bus == "sim"
    assert pole(board="linux-controller", sensors=[]).sensors == []
    refused("no board profile", board="nope")
    refused(r"board: board .* is not valid", board="../x")


def test_sensor_entries():
    c = pole(sensors=[{"model": "bme280", "name": "air2", "options": {"baud": 9600}}])
    s = c.sensors[0]
    assert (s.name, s.options) == ("air2", {"baud": 9600})
    refused("sensor names must be unique", sensors=[{"model": "bme280"}, {"model": "bme280"}])
    refused(r"sensors\[1\].model is required", sensors=[{"name": "x"}])
    refused(
        r"sensors\[2\].name: sensor name",
        sensors=[{"model": "bme280"}, {"model": "sht31", "name": "A"}],
    )
    refused(r"sensors\[1\].model .* is not a model name", sensors=[{"model": "../../etc/x"}])
    refused("no descriptor for sensor model", sensors=[{"model": "nosuch"}])
    refused(r"sensors\[1\].options must be a table of strings, numbers and booleans",
            sensors=[{"model": "bme280", "options": {"nested": {"a": 1}}}])  # fmt: skip
    refused(
        r"sensors\[1\].address must be 0 to 127", sensors=[{"model": "bme280", "address": 0x100}]
    )
    refused("sensors must be an array of tables", sensors={"model": "bme280"})
    assert SensorConfig({"model": "bme280"}).name == "bme280"


def test_python_none_means_not_set():
    c = PoleConfig({"pole_id": ID, "board": None, "health_s": None, "mqtt": {"username": None}})
    assert c.board is None and c.health_s == 60 and c.mqtt.username is None


# -- unknown keys --------------------------------------------------------------------


def test_the_example_from_the_brief():
    assert refused(None, windw_s=60) == "windw_s is not a key; did you mean window_s?"


@pytest.mark.parametrize(("table", "key"), ALL_KEYS, ids=KEY_IDS)
def test_a_typo_of_any_key_is_refused_with_that_key_suggested(table, key):
    typo = key.name + key.name[-1]  # a doubled last letter: windoww_s, urll, kk
    raw = place(table, {typo: 1})
    with pytest.raises(ConfigError) as exc:
        PoleConfig(raw)
    assert (
        str(exc.value)
        == f"{where(table)}{typo} is not a key; did you mean {where(table)}{key.name}?"
    )


@pytest.mark.parametrize("table", TABLES, ids=[t.header for t in TABLES])
def test_junk_far_from_any_key_lists_the_keys_and_the_doc(table):
    with pytest.raises(ConfigError) as exc:
        PoleConfig(place(table, {"zqxjv": 1}))
    msg = str(exc.value)
    assert msg.startswith(f"{where(table)}zqxjv is not a key; the keys of {table.header} are ")
    assert all(k.name in msg for k in table.keys) and "docs/config.md" in msg


def test_keys_in_the_wrong_table_say_where_they_belong():
    msg = refused(None, mqtt={"window_s": 60})
    assert msg == (
        "mqtt.window_s is not a key of [mqtt]; window_s belongs at the top of the file, "
        "before the first [table] header"
    )
    assert (
        refused(None, url="mqtt://h")
        == "url is not a top-level key; did you mean mqtt.url (in [mqtt])?"
    )
    assert "did you mean privacy.legal_basis" in refused(None, legal_basis="x")


def test_unprintable_keys_are_described_not_echoed():
    msg = refused("is not a key", **{"\x1b[2Jwindow_s\n": 1})
    assert "\x1b" not in msg and "\n" not in msg


@pytest.mark.parametrize("name", ["mqtt", "privacy", "alarms", "lamp", "location", "file_drop"])
def test_a_table_that_is_not_a_table(name):
    refused(f"{name} must be a table, got a string", **{name: "x"})


# -- wrong types ---------------------------------------------------------------------

WRONG = {
    INTEGER.name: ("60", "a string"),
    NUMBER.name: ("2.5", "a string"),
    STRING.name: (5, "an integer"),
    BOOLEAN.name: (1, "an integer"),
    PATH.name: (True, "a boolean"),
    INTEGER_OR_STRING.name: (1.5, "a decimal number"),
    SCALAR_TABLE.name: ("baud=9600", "a string"),
}


@pytest.mark.parametrize(("table", "key"), ALL_KEYS, ids=KEY_IDS)
def test_a_wrong_type_names_the_key_and_the_type_it_wants(table, key):
    value, got = WRONG[key.kind.name]
    with pytest.raises(ConfigError) as exc:
        PoleConfig(place(table, {key.name: value}))
    msg = str(exc.value)
    assert msg.startswith(f"{where(table)}{key.name} must be {key.kind.article}"), msg
    assert f"got {got}" in msg


def test_the_type_message_from_the_brief_and_bools_are_not_ints():
    assert refused(None, window_s="60").startswith(
        "window_s must be an integer (seconds), got a string"
    )
    refused("window_s must be an integer .*got a boolean", window_s=True)
    refused("must be a number .*got a boolean", driver_timeout_s=False)
    refused("not finite", alarms={"tilt_max_deg": math.nan})
    assert pole(driver_timeout_s=0).driver_timeout_s == 0.0  # an int is a fine number


@pytest.mark.parametrize(("key", "value", "words"), [
    ("window_s", 0, "window_s must be 1 to 86400 seconds, got 0"),
    ("window_s", 86401, "window_s must be 1 to 86400 seconds, got 86401"),
    ("health_s", 0, "health_s must be at least 1 second, got 0"),
    ("driver_timeout_s", -1, "driver_timeout_s must be at least 0 seconds, got -1"),
    ("transport", "http", 'transport must be one of "mqtt", "file", got "http"'),
    ("spool_synchronous", "OFF", 'spool_synchronous must be one of "FULL", "NORMAL"'),
])  # fmt: skip
def test_values_out_of_range(key, value, words):
    assert words in refused(None, **{key: value})


# -- the broker URL ------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "mqtt:/host",
        "mqtt:host",
        "mqtt://host:",
        "mqtt://host/x",
        "mqtt://host/",
        "mqtt://host?x=1",
        "mqtt://host#f",
        "mqtt://:1883",
        "mqtt://",
        "tcp://h",
        "MQTT://h",
        "http://h:1883",
        "mqtt://h:0",
        "mqtt://h:65536",
        "mqtt://h:12a",
        "mqtt://user:secret@h",
        "mqtt://h h",
        " mqtt://h",
        "mqtt://h\n",
        "mqtt://-h",
        "mqtt://a..b",
        "mqtt://1.2.3.999",
        "mqtt://[::1",
        "mqtt://[nothex]",
        "mqtt://h:1883:1",
        "mqtt://h:²",
    ],
)
def test_broker_urls_that_do_not_parse_exactly_are_refused(url):
    msg = refused("mqtt.url", mqtt={"url": url})
    assert "use mqtt://HOST or mqtt://HOST:PORT (mqtts:// for TLS)" in msg
    assert "secret" not in msg  # a password in the URL is not repeated into the log
    assert msg.count("\n") == 0


def test_a_password_in_the_url_is_refused_without_being_logged_elsewhere():
    assert "mqtt.password_file" in refused(None, mqtt={"url": "mqtt://u:p@h"})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://h", (False, "h", 1883)),
        ("mqtts://h", (True, "h", 8883)),
        ("mqtt://broker.city.example:1884", (False, "broker.city.example", 1884)),
        ("mqtts://10.0.0.7:65535", (True, "10.0.0.7", 65535)),
        ("mqtt://[::1]:1", (False, "::1", 1)),
        ("mqtt://mosquitto_1:1883", (False, "mosquitto_1", 1883)),
    ],
)
def test_broker_urls_that_parse(url, expected):
    assert parse_broker_url(url) == expected
    m = MqttConfig({"url": url})
    assert (m.tls, m.host, m.port) == expected and m.url == url


# -- differential privacy that lasts a day -------------------------------------------


def test_a_dp_budget_that_cannot_last_a_day_is_refused():
    with pytest.raises(ConfigError) as exc:
        pole(privacy={"mode": "dp", "epsilon": 1.0})  # the old default: dark by 06:00
    msg = str(exc.value)
    assert "privacy.epsilon 1 cannot last a day: 96 bins × 1 count series × 1 = 96" in msg
    assert "privacy.daily_epsilon 24" in msg and "privacy.epsilon = 0.25 or less" in msg


def test_explicit_epsilon_is_checked_against_the_count_series():
    p = PrivacyConfig({"mode": "dp", "epsilon": 0.25})
    assert p.epsilon_for(1) == 0.25
    with pytest.raises(ConfigError, match=r"96 bins × 3 count series .* = 72 > .* 24.*0\.083"):
        p.epsilon_for(3)
    assert PrivacyConfig({"mode": "dp", "epsilon": 0.083}).epsilon_for(3) == 0.083


def test_auto_shares_the_day_out():
    p = PrivacyConfig({"mode": "dp"})
    assert p.bins_per_day == 96 and p.epsilon_for(1) == 0.25 and p.epsilon_for(3) == 0.083
    assert PrivacyConfig({"bin_s": 7000}).bins_per_day == 13  # a day can start 13 bins
    assert PrivacyConfig({"bin_s": 100000}).bins_per_day == 1
    with pytest.raises(ConfigError, match="cannot cover 1440 bins a day × 20 count series"):
        PrivacyConfig({"mode": "dp", "bin_s": 60}).epsilon_for(20)  # 24/1440/20 < 0.001
    with pytest.raises(ConfigError, match="cannot cover"):
        pole(privacy={"mode": "dp", "bin_s": 60, "daily_epsilon": 1.0})


@given(
    bin_s=st.integers(60, 2 * 86400),
    daily=st.floats(0.001, 1000),
    n=st.integers(0, 50),
)
def test_auto_always_fits_the_day(bin_s, daily, n):
    p = PrivacyConfig({"bin_s": bin_s, "daily_epsilon": daily})
    try:
        eps = p.epsilon_for(n)
    except ConfigError as exc:
        assert daily / p.bins_per_day / max(n, 1) < 0.001 + 1e-9, str(exc)
        return
    assert eps >= 0.001 and eps * p.bins_per_day * max(n, 1) <= daily * (1 + 1e-9)
    assert math.isclose(eps * 1000, round(eps * 1000))  # on the sampler's grid
    # what "auto" chose is also accepted when written down
    assert PrivacyConfig({"bin_s": bin_s, "daily_epsilon": daily, "epsilon": eps}).epsilon_for(n)


# -- personal data needs a legal basis -----------------------------------------------


def test_a_probe_sniffer_without_a_legal_basis_is_refused():
    sniffer = [{"model": "probe_sniffer", "port": "sim"}]
    msg = refused("legal_basis", sensors=sniffer)
    assert "docs/privacy.md" in msg and "personal data" in msg
    refused("legal_basis", sensors=sniffer, privacy={"legal_basis": "  "})
    c = pole(sensors=sniffer, privacy={"legal_basis": "municipal bylaw X, art. 3"})
    assert c.sensors[0].model == "probe_sniffer"


def test_a_board_with_a_probe_sniffer_needs_the_legal_basis_too(tmp_path):
    hw = tmp_path / "hw"
    (hw / "sensors").mkdir(parents=True)
    (hw / "boards").mkdir()
    src = ROOT / "hardware" / "sensors" / "probe_sniffer.json"
    (hw / "sensors" / "probe_sniffer.json").write_text(src.read_text())
    (hw / "boards" / "counting.json").write_text(
        '{"board": "counting", "sensors": [{"model": "probe_sniffer", "port": "/dev/ttyS1"}]}'
    )
    refused("legal_basis", board="counting", hardware_dir=str(hw))
    ok = pole(board="counting", hardware_dir=str(hw), privacy={"legal_basis": "bylaw"})
    assert [s.model for s in ok.sensors] == ["probe_sniffer"]


def test_sensors_without_personal_data_need_no_legal_basis():
    assert len(pole(board="sim-pole").sensors) == 2


# -- random configurations -----------------------------------------------------------

NAME = st.text(string.ascii_lowercase + string.digits + "_", min_size=1, max_size=12).filter(
    lambda s: s[0] != "_"
)
HOST = st.sampled_from(["h", "broker.example", "10.1.2.3", "[::1]", "mosquitto_1"])
SPECIAL = {
    "pole_id": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,20}", fullmatch=True),
    "board": st.just("sim-pole"),
    "hardware_dir": st.none(),
    "url": st.builds(
        lambda s, h, p: f"{s}://{h}" + (f":{p}" if p else ""),
        st.sampled_from(["mqtt", "mqtts"]),
        HOST,
        st.one_of(st.none(), st.integers(1, 65535)),
    ),
    "topic_prefix": st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True),
    "sensor": NAME,
    "schedule": st.builds(
        lambda a, b, c, d: f"{a:02d}:{b:02d}-{c:02d}:{d:02d}",
        st.integers(0, 23),
        st.integers(0, 59),
        st.integers(0, 23),
        st.integers(0, 59),
    ),
    "epsilon": st.just("auto"),  # explicit values: test_explicit_epsilon...
}


def value_for(key: Key, values: dict) -> st.SearchStrategy:
    if key.name == "window_offset_s":
        return st.one_of(st.just("auto"), st.integers(0, values["window_s"] - 1))
    if key.name in SPECIAL:
        return SPECIAL[key.name]
    if key.choices:
        return st.sampled_from(key.choices)
    lo, hi = key.bounds(values)
    if key.kind is INTEGER:
        return st.integers(0 if lo is None else int(lo), 10**6 if hi is None else int(hi))
    if key.kind is NUMBER:
        return st.floats(0.0 if lo is None else lo, 1e6 if hi is None else hi)
    if key.kind is BOOLEAN:
        return st.booleans()
    if key.kind in (STRING, PATH):
        return st.text(string.ascii_letters + string.digits + "/._- ", max_size=20)
    if key.kind is INTEGER_OR_STRING:
        return st.one_of(st.integers(0, 9), st.just("sim"))
    return st.dictionaries(NAME, st.one_of(st.integers(), st.booleans(), st.text(max_size=5)))


@st.composite
def table_of(draw: st.DrawFn, table: Table) -> dict:
    values: dict = {}
    raw: dict = {}
    for key in table.keys:
        wanted = key.default is REQUIRED or draw(st.booleans())
        if not wanted:
            values[key.name] = (
                key.default.value(values) if isinstance(key.default, Derived) else key.default
            )
            continue
        raw[key.name] = values[key.name] = draw(value_for(key, values))
        if key.name == "min_bin_s":  # the floor under the floor: never below a minute
            values[key.name] = max(60, values[key.name])
    return raw


@st.composite
def configs(draw: st.DrawFn) -> dict:
    cfg = draw(table_of(POLE))
    cfg.pop("board", None)
    for t in TABLES:
        if t.name and not t.array and draw(st.booleans()):
            cfg[t.name] = draw(table_of(t))
    if cfg.get("privacy", {}).get("mode") == "dp":
        cfg["privacy"]["daily_epsilon"] = 24.0
        cfg["privacy"]["bin_s"] = 900
        cfg["privacy"]["min_bin_s"] = 60
    models = draw(st.lists(st.sampled_from(["bme280", "sds011", "sht31", "ld2450",
                                            "probe_sniffer"]), max_size=4))  # fmt: skip
    if "probe_sniffer" in models:
        cfg.setdefault("privacy", {})["legal_basis"] = "test"
    cfg["sensors"] = [{"model": m, "name": f"s{i}"} for i, m in enumerate(models)]
    return cfg


@settings(max_examples=150, deadline=None)
@given(configs())
def test_random_valid_configurations_parse_and_keep_their_values(cfg):
    c = PoleConfig(cfg)
    for key in POLE.keys:
        if key.name in cfg and key.kind is not PATH and cfg[key.name] != "auto":
            got = getattr(c, key.name)
            assert got == (
                cfg[key.name].upper() if key.name == "spool_synchronous" else cfg[key.name]
            )
    assert 0 <= c.window_offset_s < c.window_s
    for name, value in cfg.get("mqtt", {}).items():
        assert getattr(c.mqtt, name) == (
            value or None if name in ("username", "password") else value
        )
    for name, value in cfg.get("privacy", {}).items():
        assert getattr(c.privacy, name) == (max(60, value) if name == "min_bin_s" else value)
    assert [s.name for s in c.sensors] == [s["name"] for s in cfg["sensors"]]


JUNK = st.text(min_size=1, max_size=20).filter(
    lambda k: all(k != key.name for t in TABLES for key in t.keys) and k not in
    {t.name for t in TABLES}
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(configs(), JUNK, st.sampled_from([t.name for t in TABLES]), st.integers())
def test_random_junk_keys_are_refused_at_any_level(cfg, junk, table, value):
    if table == "sensors":
        cfg["sensors"] = [{"model": "bme280", junk: value}]
    elif table:
        tbl = next(t for t in TABLES if t.name == table)
        cfg[table] = {**place(tbl, cfg.get(table, {}))[table], junk: value}
    else:
        cfg[junk] = value
    with pytest.raises(ConfigError, match="is not a key") as exc:
        PoleConfig(cfg)
    assert "\n" not in str(exc.value)


# -- one truth: declarations, classes, docs ------------------------------------------


@pytest.mark.parametrize(
    ("cls", "table"),
    [
        (PoleConfig, POLE),
        (MqttConfig, TABLES[1]),
        (FileDropConfig, TABLES[2]),
        (PrivacyConfig, PRIVACY),
        (SensorConfig, TABLES[-1]),
    ],
)
def test_every_declared_key_is_an_annotated_attribute(cls, table):
    assert {k.name for k in table.keys} <= set(cls.__annotations__)


def test_declarations_are_well_formed():
    names = [t.name for t in TABLES]
    assert len(set(names)) == len(names)
    for t in TABLES:
        keys = [k.name for k in t.keys]
        assert len(set(keys)) == len(keys), t.name
        for k in t.keys:
            assert k.doc and k.doc == k.doc.strip() and "\n" not in k.doc, k.name
            if k.default not in (None, REQUIRED, "auto") and not isinstance(k.default, Derived):
                assert k.kind.accepts(k.default), k.name


def test_every_key_is_in_the_docs_and_the_docs_example_parses():
    text = (ROOT / "docs" / "config.md").read_text()
    assert markdown_tables().strip() in text
    for t, k in ALL_KEYS:
        assert f"| `{k.name}` |" in text, (t.name, k.name)
    for block in re.findall(r"```toml\n(.*?)```", text, re.S):
        PoleConfig(tomllib.loads(block))

"""Checking what arrives on the console: every argument by key, type and range.

The console (edge/console.py) is reachable by anyone with a cable at the pole, so its
JSON is hostile until checked here: its nesting is counted before it is parsed, NaN
and Infinity are refused, every command's keys are whitelisted (an unknown key is
refused by name), numbers are range-checked, text is printable ASCII of bounded
length, names follow ``edge.names``, and the pole's TOML is written by a TOML writer
(tomli-w), never by string formatting. Refusals describe a bad value with
``edge.names.describe`` (type and length), never by echoing it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import tomli_w

from edge.config import ConfigError, parse_broker_url
from edge.cose import kid_for
from edge.names import SENSOR_RULE, InvalidName, check_id, check_sensor_name, describe

MAX_LINE = 16384
MAX_JSON_DEPTH = 6  # CONFIGURE's sensors[].options{} is the deepest: 3 levels
MAX_OPERATORS = 16
CONFIG_HEADER = "# Written by the provisioning console (pole-admin provision); edit with care.\n"
PRINTABLE = frozenset(chr(c) for c in range(0x21, 0x7F))  # ASCII without space/controls
HEX = frozenset("0123456789abcdefABCDEF")


class ConsoleError(Exception):
    """A refused command: a code for programs, a message and what to do next for people."""

    def __init__(self, code: str, message: str, next_step: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.next_step = next_step


def _json_depth_ok(text: str, limit: int) -> bool:
    """Is the nesting of ``text`` at most ``limit``? Checked before json.loads, so deep
    nesting costs one linear scan instead of a recursion."""
    depth = 0
    in_str = esc = False
    for c in text:
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth += 1
            if depth > limit:
                return False
        elif c in "]}":
            depth -= 1
    return True


def _no_constant(name: str) -> object:
    raise ValueError("NaN and Infinity are not JSON")


def parse_args(text: str) -> dict:
    """The JSON object of a request, bounded in size and depth; ConsoleError otherwise."""
    if not text:
        return {}
    if len(text) > MAX_LINE:
        raise ConsoleError("too_long", "the request is too long", "update pole-admin")
    if not _json_depth_ok(text, MAX_JSON_DEPTH):
        raise ConsoleError(
            "bad_request",
            f"the arguments are nested deeper than {MAX_JSON_DEPTH} levels",
            "update pole-admin",
        )
    try:
        args = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise ConsoleError(
            "bad_request",
            f"the arguments are not valid JSON ({type(exc).__name__})",
            "the laptop retries; if this persists, update pole-admin",
        ) from None
    if not isinstance(args, dict):
        raise ConsoleError(
            "bad_request", f"the arguments must be a JSON object, not {describe(args)}"
        )
    return args


def only(args: dict, allowed: frozenset[str] | set[str], what: str) -> None:
    for k in args:
        if k not in allowed:
            raise ConsoleError(
                "bad_request",
                f"{what} does not take the key {describe(k)}",
                f"allowed: {', '.join(sorted(allowed))}; update pole-admin",
            )


def number(value: object, key: str, lo: float, hi: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not math.isfinite(value))
        or not lo <= value <= hi
    ):
        raise ConsoleError(
            "bad_value", f"{key} is {describe(value)}: give a number from {lo:g} to {hi:g}"
        )
    return float(value)


def integer(value: object, key: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConsoleError(
            "bad_value", f"{key} is {describe(value)}: give a whole number from {lo} to {hi}"
        )
    return value


def text(value: object, key: str, max_len: int = 255, spaces: bool = False) -> str:
    """Printable ASCII (no control characters or newlines), bounded."""
    if (
        isinstance(value, str)
        and 0 < len(value) <= max_len
        and all(c in PRINTABLE or (spaces and c == " ") for c in value)
    ):
        return value
    raise ConsoleError(
        "bad_value", f"{key} is {describe(value)}: give 1 to {max_len} printable ASCII characters"
    )


def checked_name(check: Callable[[object], str], value: object) -> str:
    try:
        return check(value)
    except InvalidName as exc:
        raise ConsoleError("bad_name", str(exc), "fix the name and run again") from None


def _broker_url(value: object) -> str:
    url = text(value, "broker_url")
    try:
        parse_broker_url(url)  # the daemon's own rule, so the pole accepts what it can use
    except ConfigError:
        raise ConsoleError(
            "bad_value",
            f"broker_url {describe(url)} is not mqtt://HOST:PORT or mqtts://HOST:PORT",
            "give --broker-url like mqtts://broker.city.example:8883 (the password goes "
            "over CREDENTIALS, never in the URL)",
        ) from None
    return url


SENSOR_KEYS = frozenset(("model", "name", "port", "i2c_bus", "address", "options"))


def _sensor(value: object, i: int) -> dict:
    if not isinstance(value, dict):
        raise ConsoleError("bad_value", f"sensors[{i}] is {describe(value)}, not an object")
    only(value, SENSOR_KEYS, f"sensors[{i}]")
    model = value.get("model")
    try:
        check_sensor_name(model)
    except InvalidName:
        raise ConsoleError(
            "bad_name", f"sensors[{i}].model {describe(model)} is not valid: use {SENSOR_RULE}"
        ) from None
    out: dict = {"model": model}
    if value.get("name") is not None:
        out["name"] = checked_name(check_sensor_name, value["name"])
    if value.get("port") is not None:
        out["port"] = text(value["port"], f"sensors[{i}].port")
    bus = value.get("i2c_bus")
    if isinstance(bus, str):
        out["i2c_bus"] = checked_name(lambda v: check_id(v, "i2c bus"), bus)
    elif bus is not None:
        out["i2c_bus"] = integer(bus, f"sensors[{i}].i2c_bus", 0, 255)
    if value.get("address") is not None:
        out["address"] = integer(value["address"], f"sensors[{i}].address", 0, 0x3FF)
    options = value.get("options")
    if options is not None:
        if not isinstance(options, dict) or len(options) > 16:
            raise ConsoleError(
                "bad_value", f"sensors[{i}].options is {describe(options)}: give up to 16 keys"
            )
        opts: dict = {}
        for k, v in options.items():
            key = checked_name(check_sensor_name, k)
            where = f"sensors[{i}].options.{key}"
            if isinstance(v, bool):
                opts[key] = v
            elif isinstance(v, int):
                opts[key] = integer(v, where, -(2**53), 2**53)
            elif isinstance(v, float):
                opts[key] = number(v, where, -1e15, 1e15)
            else:
                opts[key] = text(v, where, spaces=True)
        if opts:
            out["options"] = opts
    return out


CONFIGURE_KEYS = frozenset(
    (
        "pole_id",
        "lat",
        "lon",
        "broker_url",
        "topic_prefix",
        "ca_file",
        "board",
        "window_s",
        "sensors",
    )
)


def configuration(args: dict, pole_id: str, state_dir: Path, password_file: Path) -> dict:
    """The pole's configuration from CONFIGURE's arguments: every key and type checked."""
    only(args, CONFIGURE_KEYS | {"auth", "dry_run"}, "CONFIGURE")
    lat = number(args.get("lat"), "lat", -90, 90)
    lon = number(args.get("lon"), "lon", -180, 180)
    url = args.get("broker_url")
    prefix = args.get("topic_prefix")
    cfg: dict = {
        "pole_id": pole_id,
        "state_dir": str(state_dir),
        "location": {"lat": lat, "lon": lon},
        "mqtt": {
            "url": "mqtt://127.0.0.1:1883" if url is None else _broker_url(url),
            "topic_prefix": "poles"
            if prefix is None
            else checked_name(lambda v: check_id(v, "topic prefix"), prefix),
            "username": pole_id,
            "password_file": str(password_file),
        },
    }
    if args.get("ca_file") not in (None, ""):
        cfg["mqtt"]["ca_file"] = text(args["ca_file"], "ca_file", spaces=True)
    if args.get("board") is not None:
        cfg["board"] = checked_name(lambda v: check_id(v, "board"), args["board"])
    if args.get("window_s") is not None:
        cfg["window_s"] = integer(args["window_s"], "window_s", 1, 86400)
    sensors = args.get("sensors")
    if sensors not in (None, []):
        if not isinstance(sensors, list) or len(sensors) > 32:
            raise ConsoleError("bad_value", f"sensors is {describe(sensors)}: give up to 32")
        cfg["sensors"] = [_sensor(s, i) for i, s in enumerate(sensors)]
    return cfg


def render_config(cfg: dict) -> str:
    """The pole's TOML file, written by a TOML writer (tomli-w), never by formatting."""
    return CONFIG_HEADER + tomli_w.dumps(cfg)


def scrub(message: str, cfg: object, limit: int = 200) -> str:
    """``message`` (from the configuration loader) safe to send back: every string of
    ``cfg`` that describe() would not show verbatim is replaced by its description, and
    the result is printable ASCII, bounded."""
    values: list[str] = []

    def walk(v: object) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str) and describe(v) != '"' + v + '"':
            values.append(v)

    walk(cfg)
    for v in sorted(values, key=len, reverse=True):
        message = message.replace(v, describe(v))
    return "".join(c for c in message if " " <= c <= "~")[:limit]


def operator_list(value: object) -> list[dict]:
    if not isinstance(value, list) or not 0 < len(value) <= MAX_OPERATORS:
        raise ConsoleError(
            "bad_value",
            f"operators is {describe(value)}: give 1 to {MAX_OPERATORS} operator keys",
            "enrol an operator at the city: pole-admin trust add-operator",
        )
    out, seen = [], set()
    for i, op in enumerate(value):
        if not isinstance(op, dict):
            raise ConsoleError("bad_value", f"operators[{i}] is {describe(op)}, not an object")
        only(op, {"name", "public_key"}, f"operators[{i}]")
        name = checked_name(lambda v: check_id(v, "operator"), op.get("name"))
        pk_hex = op.get("public_key")
        if not (isinstance(pk_hex, str) and len(pk_hex) == 64 and all(c in HEX for c in pk_hex)):
            raise ConsoleError(
                "bad_value", f"operators[{i}].public_key is {describe(pk_hex)}: 64 hex digits"
            )
        pk = bytes.fromhex(pk_hex)
        if pk in seen:
            continue
        seen.add(pk)
        out.append({"name": name, "kid": kid_for(pk).hex(), "public_key": pk.hex()})
    return sorted(out, key=lambda o: (o["name"], o["kid"]))

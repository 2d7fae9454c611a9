"""``pole-edge --check``: validate a pole's configuration without side effects, and say
what the daemon would run, the way ``mosquitto -t`` or ``hass --script check_config`` do.

Nothing here opens a bus, writes a counter, creates the spool or connects anywhere: a
technician can run it on a live pole, next to the running daemon, before a restart.
"""

from __future__ import annotations

import errno
from pathlib import Path

from edge.config import PoleConfig
from edge.cose import fingerprint
from edge.descriptors import load_sensor
from edge.manifest import count_series, output_schema, personal_source, schema_hash
from edge.sensors import driver_class
from edge.state import KEY_FILE, LOCK_FILE, load_identity, read_private


def check(config: PoleConfig) -> tuple[list[str], list[str]]:
    """(lines describing what would run, problems that would stop or cripple it)."""
    out: list[str] = []
    problems: list[str] = []
    out.append(f"pole {config.pole_id}, state in {config.state_dir}")
    try:
        ident = load_identity(config.state_dir, config.pole_id)
        out.append(f"  key {ident.kid.hex()} (fingerprint {fingerprint(ident.public_key)})")
    except (OSError, ValueError) as exc:
        problems.append(f"identity: {exc}")
    lock = config.state_dir / LOCK_FILE
    if lock.exists():
        out.append(f"  (a daemon may be running: {lock} exists; --check does not touch it)")
    if config.transport == "file":
        out.append(f"transport: file drop into {config.file_drop.dir}")
    else:
        m = config.mqtt
        tls = "TLS" if m.tls else "no TLS"
        out.append(
            f"transport: MQTT 5 to {m.host}:{m.port} ({tls}), topics {m.topic_prefix}/"
            f"{config.pole_id}/<kind>, user {m.username or '(none)'}"
        )
        if m.password_file:
            try:
                read_private(Path(m.password_file))
            except OSError as exc:
                why = "missing" if exc.errno == errno.ENOENT else str(exc)
                problems.append(f"mqtt.password_file {m.password_file}: {why}")
    out.append(
        f"window {config.window_s} s (offset {config.window_offset_s} s), "
        f"health every {config.health_s} s"
    )
    sensors = []
    for sc in config.sensors:
        try:
            desc = load_sensor(sc.model, config.hardware_dir)
            cls = driver_class(desc)
        except (LookupError, ImportError, ValueError) as exc:
            problems.append(f"sensor {sc.name}: {exc}")
            continue
        sensors.append((sc.name, desc))
        where = (
            f"/dev/i2c-{sc.i2c_bus} address 0x{(sc.address or desc.default_address or 0):02x}"
            if desc.bus == "i2c"
            else sc.port or "(no port)"
        )
        out.append(
            f"  sensor {sc.name}: {desc.model} on {desc.bus} {where}, every "
            f"{desc.poll_s:g} s, driver {cls.__module__}.{cls.__name__}"
        )
        if desc.bus == "uart" and not sc.port:
            problems.append(f"sensor {sc.name}: set port, e.g. /dev/ttyUSB0")
        if desc.bus == "i2c" and sc.i2c_bus is None:
            problems.append(f"sensor {sc.name}: set i2c_bus (the N of /dev/i2c-N)")
    pv = config.privacy
    series = count_series(sensors, pv)
    line = f"privacy: counts in {pv.bin_s} s bins, k {pv.k}, rounded to {pv.round_to}"
    if pv.mode == "dp":
        try:
            line += (
                f", DP epsilon {pv.epsilon_for(len(series))} per bin and series, "
                f"{pv.daily_epsilon:g} per day"
            )
        except ValueError as exc:
            problems.append(str(exc))
    out.append(line)
    if any(personal_source(d) for _, d in sensors):
        out.append(f"  a personal-data sensor runs under the stated legal basis: {pv.legal_basis}")
    schema = output_schema(sensors, pv)
    out.append(
        f"publishes {sum(len(v) for k, v in schema.items() if k != 'never leaves the pole')}"
        f" declared records; schema sha256 {schema_hash(schema)} "
        "(pole-admin audit --config prints them)"
    )
    if not (config.state_dir / KEY_FILE).exists() and not any("identity" in p for p in problems):
        problems.append(f"identity: no key in {config.state_dir}")
    return out, problems

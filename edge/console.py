"""The provisioning console: the controller's side of ``pole-admin provision``.

A technician at the foot of a pole plugs a laptop into the controller's serial
console. This agent, on the controller, answers a small line protocol, so that the
pole's key is generated *here* and never crosses the cable; only the public key and a
proof of possession go back. Every command is idempotent: provisioning that is
interrupted (a pulled cable, a flat laptop battery, a power cut at the pole) is simply
run again and picks up where it stopped, with one identity.

Frames are single ASCII lines, checked with CRC-32, so kernel messages or a login
prompt sharing the console are skipped rather than misread, and line noise is an
error rather than a wrong configuration::

    laptop     -> controller:  LP? <seq> <COMMAND> <json> <crc32 hex>
    controller -> laptop:      LP! <seq> OK <json> <crc32 hex>
                               LP! <seq> ERR <json: code, message, next> <crc32 hex>

(the CRC covers everything between the marker and the CRC). Commands: HELLO, KEYGEN,
CONFIGURE, PUBKEY, CREDENTIALS, FINISH, WIPE. See docs/technician.md.

Run on the controller: ``pole-console --port /dev/ttyS0 --config /etc/lightpole/pole.toml
--state-dir /var/lib/lightpole``.
"""

from __future__ import annotations

import argparse
import binascii
import contextlib
import json
import logging
import os
import select
import sys
import termios
import threading
import time
import tty
from pathlib import Path

from nacl.bindings import crypto_sign, crypto_sign_seed_keypair

from edge import __version__
from edge.config import POLE_ID_RE
from edge.state import KEY_FILE, PUB_FILE, Identity, atomic_write, create_identity, load_identity

log = logging.getLogger(__name__)

PROTOCOL = 1
REQUEST = "LP?"
RESPONSE = "LP!"
PASSWORD_FILE = "mqtt.password"
PROVISIONED_FILE = "provisioned.json"
# Domain separation: a registration proof can never be mistaken for a COSE Sig_structure
# (which always begins with the CBOR array header 0x84) or a rotation proof.
PROOF_CONTEXT = b"lightpole-register"
MAX_LINE = 16384


def crc(text: str) -> str:
    return f"{binascii.crc32(text.encode()) & 0xFFFFFFFF:08x}"


def frame(marker: str, body: str) -> bytes:
    """``marker body crc\\n``: one line, ASCII only (json.dumps escapes the rest)."""
    return f"{marker} {body} {crc(body)}\n".encode("ascii")


def unframe(marker: str, line: str) -> str | None:
    """The body of one of our frames, or None for anything else on the line (kernel
    messages, a login prompt, echo). Raises ValueError when it is ours but damaged."""
    line = line.strip()
    if not line.startswith(marker + " "):
        return None
    body, _, check = line[len(marker) + 1 :].rpartition(" ")
    if not body or check != crc(body):
        raise ValueError("damaged frame (CRC mismatch): line noise on the serial cable?")
    return body


def registration_proof_message(pole_id: str, public_key: bytes, nonce: bytes) -> bytes:
    return PROOF_CONTEXT + b"\x00" + pole_id.encode() + b"\x00" + public_key + nonce


class ConsoleError(Exception):
    """A refused command: a code for programs, a message and what to do next for people."""

    def __init__(self, code: str, message: str, next_step: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.next_step = next_step


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string is a JSON string for our ASCII values
    raise ConsoleError("bad_request", f"cannot write {type(v).__name__} to the config")


def render_config(cfg: dict) -> str:
    """A pole TOML file from a dict of scalars, tables (dict) and arrays of tables."""
    head, tables, arrays = [], [], []
    for k, v in cfg.items():
        if isinstance(v, dict):
            tables.append(f"\n[{k}]\n" + "".join(f"{a} = {_toml_value(b)}\n" for a, b in v.items()))
        elif isinstance(v, list):
            for item in v:
                arrays.append(
                    f"\n[[{k}]]\n" + "".join(f"{a} = {_toml_value(b)}\n" for a, b in item.items())
                )
        else:
            head.append(f"{k} = {_toml_value(v)}\n")
    top = "# Written by the provisioning console (pole-admin provision); edit with care.\n"
    return top + "".join(head) + "".join(tables) + "".join(arrays)


class ConsoleAgent:
    """Answers provisioning commands for one controller: its state dir and config file."""

    def __init__(self, state_dir: Path, config_path: Path) -> None:
        # Absolute: the config names the state dir, and the daemon reads it from elsewhere.
        self.state_dir = state_dir.resolve()
        self.config_path = config_path.resolve()

    # -- state ----------------------------------------------------------------------
    def _identity(self) -> Identity | None:
        if not (self.state_dir / KEY_FILE).exists():
            return None
        try:
            return load_identity(self.state_dir)
        except ValueError:
            return None  # a key without its identity.json: KEYGEN completes it

    def status(self) -> dict:
        ident = self._identity()
        return {
            "identity": ident is not None or (self.state_dir / KEY_FILE).exists(),
            "pole_id": ident.pole_id if ident else None,
            "configured": self.config_path.exists(),
            "credentials": (self.state_dir / PASSWORD_FILE).exists(),
            "provisioned": (self.state_dir / PROVISIONED_FILE).exists(),
        }

    def _require_identity(self, pole_id: object) -> Identity:
        ident = self._identity()
        if ident is None:
            raise ConsoleError("no_identity", "this controller has no key yet", "run KEYGEN first")
        if pole_id != ident.pole_id:
            raise ConsoleError(
                "wrong_pole",
                f"this controller belongs to pole {ident.pole_id}, not {pole_id}",
                "check the pole number on the mast; to reuse this controller elsewhere, "
                f"decommission {ident.pole_id} first",
            )
        return ident

    # -- commands -------------------------------------------------------------------
    def cmd_hello(self, args: dict) -> dict:
        return {"protocol": PROTOCOL, "software": "lightpole-edge " + __version__, **self.status()}

    def cmd_keygen(self, args: dict) -> dict:
        pole_id = args.get("pole_id")
        if not isinstance(pole_id, str) or not POLE_ID_RE.match(pole_id):
            raise ConsoleError(
                "bad_pole_id",
                f"pole id {pole_id!r} is not valid",
                "use letters, digits and '-', e.g. nl-ehv-00042",
            )
        key = self.state_dir / KEY_FILE
        if key.exists():
            ident = self._identity()
            if ident is None:  # interrupted between the key and its public record
                ident = load_identity(self.state_dir, pole_id)
                atomic_write(self.state_dir / PUB_FILE, json.dumps(ident.public_record()).encode())
                return {**ident.public_record(), "created": False}
            self._require_identity(pole_id)
            return {**ident.public_record(), "created": False}
        ident = create_identity(self.state_dir, pole_id)
        log.info("generated the key of pole %s (kid %s)", pole_id, ident.kid.hex())
        return {**ident.public_record(), "created": True}

    def cmd_configure(self, args: dict) -> dict:
        ident = self._require_identity(args.get("pole_id"))
        lat, lon = args.get("lat"), args.get("lon")
        if not (isinstance(lat, (int, float)) and -90 <= lat <= 90):
            raise ConsoleError("bad_location", f"latitude {lat!r} out of range", "give --lat")
        if not (isinstance(lon, (int, float)) and -180 <= lon <= 180):
            raise ConsoleError("bad_location", f"longitude {lon!r} out of range", "give --lon")
        cfg: dict = {
            "pole_id": ident.pole_id,
            "state_dir": str(self.state_dir),
            "location": {"lat": float(lat), "lon": float(lon)},
            "mqtt": {
                "url": str(args.get("broker_url", "mqtt://127.0.0.1:1883")),
                "topic_prefix": str(args.get("topic_prefix", "poles")),
                "username": ident.pole_id,
                "password_file": str(self.state_dir / PASSWORD_FILE),
            },
        }
        if args.get("ca_file"):
            cfg["mqtt"]["ca_file"] = str(args["ca_file"])
        for key in ("board", "window_s"):
            if args.get(key) is not None:
                cfg[key] = args[key]
        if args.get("sensors"):
            cfg["sensors"] = list(args["sensors"])
        text = render_config(cfg)
        import tomllib

        from edge.config import ConfigError, PoleConfig

        try:  # refuse what the daemon would refuse, before writing it
            PoleConfig(tomllib.loads(text), base_dir=self.config_path.parent)
        except (ConfigError, OSError, ValueError) as exc:
            raise ConsoleError("bad_config", str(exc), "fix the value and run again") from None
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        changed = not self.config_path.exists() or self.config_path.read_text() != text
        if changed:
            atomic_write(self.config_path, text.encode())
        return {"config": str(self.config_path), "changed": changed}

    def cmd_pubkey(self, args: dict) -> dict:
        ident = self._require_identity(args.get("pole_id"))
        try:
            nonce = bytes.fromhex(str(args.get("nonce", "")))
        except ValueError:
            nonce = b""
        if len(nonce) < 16:
            raise ConsoleError("bad_request", "PUBKEY needs a fresh nonce of 16+ bytes (hex)")
        sk = crypto_sign_seed_keypair(ident.seed)[1]
        msg = registration_proof_message(ident.pole_id, ident.public_key, nonce)
        return {**ident.public_record(), "proof": crypto_sign(msg, sk)[:64].hex()}

    def cmd_credentials(self, args: dict) -> dict:
        self._require_identity(args.get("pole_id"))
        password = args.get("password")
        if not isinstance(password, str) or len(password) < 16:
            raise ConsoleError("bad_request", "CREDENTIALS needs the broker password (16+ chars)")
        path = self.state_dir / PASSWORD_FILE
        atomic_write(path, (password + "\n").encode(), mode=0o600)
        return {"password_file": str(path)}

    def cmd_finish(self, args: dict) -> dict:
        ident = self._require_identity(args.get("pole_id"))
        missing = [
            k for k, v in self.status().items() if k in ("configured", "credentials") and not v
        ]
        if missing:
            raise ConsoleError(
                "incomplete",
                f"not yet done: {', '.join(missing)}",
                "run pole-admin provision again",
            )
        record = {"pole_id": ident.pole_id, "kid": ident.kid.hex(), "at": time.time()}
        if not (self.state_dir / PROVISIONED_FILE).exists():
            atomic_write(self.state_dir / PROVISIONED_FILE, json.dumps(record).encode())
        return {"provisioned": True}

    def cmd_wipe(self, args: dict) -> dict:
        """Decommission: destroy the key (overwritten, then removed) and the secrets."""
        self._require_identity(args.get("pole_id"))
        key = self.state_dir / KEY_FILE
        with open(key, "r+b") as f:
            f.write(os.urandom(32))
            f.flush()
            os.fsync(f.fileno())
        for name in (KEY_FILE, PASSWORD_FILE, PROVISIONED_FILE, PUB_FILE):
            with contextlib.suppress(FileNotFoundError):
                (self.state_dir / name).unlink()
        with contextlib.suppress(FileNotFoundError):
            self.config_path.unlink()
        return {"wiped": True}

    COMMANDS = {
        "HELLO": cmd_hello,
        "KEYGEN": cmd_keygen,
        "CONFIGURE": cmd_configure,
        "PUBKEY": cmd_pubkey,
        "CREDENTIALS": cmd_credentials,
        "FINISH": cmd_finish,
        "WIPE": cmd_wipe,
    }

    def handle(self, line: str) -> bytes | None:
        """One request line in, one response frame out (None: not for us). Never raises."""
        try:
            body = unframe(REQUEST, line)
        except ValueError as exc:
            err = {"code": "damaged", "message": str(exc), "next": "the laptop retries"}
            return frame(RESPONSE, "0 ERR " + json.dumps(err))
        if body is None:
            return None
        seq, _, rest = body.partition(" ")
        cmd, _, arg_text = rest.partition(" ")
        try:
            args = json.loads(arg_text or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
            fn = self.COMMANDS.get(cmd)
            if fn is None:
                raise ConsoleError("unknown", f"unknown command {cmd!r}", "update pole-admin")
            result = fn(self, args)
            return frame(RESPONSE, f"{seq} OK {json.dumps(result, sort_keys=True)}")
        except ConsoleError as exc:
            err = {"code": exc.code, "message": exc.message, "next": exc.next_step}
        except ValueError as exc:
            err = {"code": "bad_request", "message": str(exc), "next": ""}
        except OSError as exc:  # a full or read-only disk: say so, keep answering
            err = {
                "code": "storage",
                "message": f"{type(exc).__name__}: {exc.strerror or exc}",
                "next": "check the controller's storage (full? read-only?) and run again",
            }
        log.warning("console: %s refused: %s", cmd, err["message"])
        return frame(RESPONSE, f"{seq} ERR {json.dumps(err)}")

    def serve_fd(self, fd: int, stop: threading.Event | None = None) -> None:
        """Serve requests on a serial/pty file descriptor until ``stop`` is set (or EOF)."""
        buf = b""
        while stop is None or not stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the other end of a pty hung up: wait for the next laptop
                time.sleep(0.1)
                continue
            if not chunk:
                return
            buf += chunk
            if len(buf) > MAX_LINE and b"\n" not in buf:
                buf = b""  # garbage without a line end: drop it
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                out = self.handle(raw.decode("ascii", "replace"))
                if out is not None:
                    os.write(fd, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="pole-console",
        description="Answer 'pole-admin provision' on this controller's serial console.",
    )
    ap.add_argument("--port", required=True, help="the console device, e.g. /dev/ttyS0")
    ap.add_argument("--config", type=Path, required=True, help="the pole's TOML file to write")
    ap.add_argument("--state-dir", type=Path, required=True, help="where the key lives")
    ap.add_argument("--log-level", default="INFO")
    a = ap.parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), format="%(levelname)s %(message)s")
    fd = os.open(a.port, os.O_RDWR | os.O_NOCTTY)
    if os.isatty(fd):
        tty.setraw(fd, termios.TCSANOW)  # no echo, no line editing: frames pass untouched
    agent = ConsoleAgent(a.state_dir, a.config)
    log.info("provisioning console on %s (%s)", a.port, json.dumps(agent.status()))
    try:
        agent.serve_fd(fd)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

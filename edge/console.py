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
CONFIGURE, PUBKEY, CREDENTIALS, OPERATORS, FINISH, WIPE. See docs/technician.md.

A cable is not an authorisation. Once a pole is finished (``provisioned.json``), the
commands that change what it is (CONFIGURE, CREDENTIALS, OPERATORS, WIPE) need a
one-time authorisation from the city: a COSE_Sign1 (EdDSA) made by one of the city's
operator keys, installed here at provisioning (``operators.json``), over
``{type: "lightpole-console-auth", v: 1, pole_id, command, nonce, exp}``, where
``nonce`` is the challenge HELLO hands out (random, kept in RAM only, used up by the
first command that presents an authorisation, expired after a few minutes). A
technician's key, a pole's key or a key the city has withdrawn cannot make one
(``edge/console_auth.py``; docs/security-console.md).

Everything that arrives here is hostile until checked: the line length is bounded
before parsing, the JSON nesting before decoding, every argument is whitelisted by
key and type (``edge/console_args.py``), names follow ``edge.names``, the configuration
is written by a TOML writer, CBOR is decoded only by ``edge.cbordecode``, refusals
describe the input with ``edge.names.describe``, never echo it, and ``handle`` never
raises.

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
from collections.abc import Callable
from pathlib import Path

from nacl.bindings import crypto_sign, crypto_sign_seed_keypair

from edge import __version__
from edge.console_args import (
    HEX,
    MAX_LINE,
    PRINTABLE,
    ConsoleError,
    configuration,
    only,
    operator_list,
    parse_args,
    render_config,
    scrub,
)
from edge.console_auth import (
    CHALLENGE_TTL_S,
    GUARDED,
    OPERATORS_FILE,
    OPERATORS_FORMAT,
    Challenge,
    check_authorisation,
    read_operators,
)
from edge.names import InvalidName, check_pole_id, describe
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
    if not line.isascii():
        raise ValueError("damaged frame (non-ASCII bytes): line noise on the serial cable?")
    body, _, check = line[len(marker) + 1 :].rpartition(" ")
    if not body or check != crc(body):
        raise ValueError("damaged frame (CRC mismatch): line noise on the serial cable?")
    return body


def registration_proof_message(pole_id: str, public_key: bytes, nonce: bytes) -> bytes:
    return PROOF_CONTEXT + b"\x00" + pole_id.encode() + b"\x00" + public_key + nonce


class ConsoleAgent:
    """Answers provisioning commands for one controller: its state dir and config file.

    Args:
        state_dir: where the pole's key, password, operators.json and provisioned.json live.
        config_path: the pole's TOML file, written by CONFIGURE.
        challenge_ttl_s: how long a challenge from HELLO stays usable.
        clock: monotonic seconds, for the challenge's age.
    """

    def __init__(
        self,
        state_dir: Path,
        config_path: Path,
        *,
        challenge_ttl_s: float = CHALLENGE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Absolute: the config names the state dir, and the daemon reads it from elsewhere.
        self.state_dir = state_dir.resolve()
        self.config_path = config_path.resolve()
        self.challenge = Challenge(challenge_ttl_s, clock)  # RAM only: a restart forgets it

    # -- state ----------------------------------------------------------------------
    def _identity(self) -> Identity | None:
        if not (self.state_dir / KEY_FILE).exists():
            return None
        try:
            return load_identity(self.state_dir)
        except ValueError:
            return None  # a key without its identity.json: KEYGEN completes it

    def finished(self) -> bool:
        return (self.state_dir / PROVISIONED_FILE).exists()

    def status(self) -> dict:
        ident = self._identity()
        return {
            "identity": ident is not None or (self.state_dir / KEY_FILE).exists(),
            "pole_id": ident.pole_id if ident else None,
            "configured": self.config_path.exists(),
            "credentials": (self.state_dir / PASSWORD_FILE).exists(),
            "operators": bool(read_operators(self.state_dir / OPERATORS_FILE)),
            "provisioned": self.finished(),
        }

    def _require_identity(self, pole_id: object) -> Identity:
        ident = self._identity()
        if ident is None:
            raise ConsoleError("no_identity", "this controller has no key yet", "run KEYGEN first")
        if pole_id != ident.pole_id:
            raise ConsoleError(
                "wrong_pole",
                f"this controller belongs to pole {ident.pole_id}, not {describe(pole_id)}",
                "check the pole number on the mast; to reuse this controller elsewhere, "
                f"decommission {ident.pole_id} first",
            )
        return ident

    # -- the authorisation ---------------------------------------------------------
    def _authorise(self, command: str, args: dict) -> None:
        """On a finished pole, ``command`` needs the city's authorisation; refuse without."""
        ident = self._require_identity(args.get("pole_id"))
        token = args.get("auth")
        if token is None:
            raise ConsoleError(
                "auth_required",
                f"this pole is finished: {command} needs an authorisation from the city; "
                "a cable alone is not enough",
                self._ask_the_city(ident.pole_id, command),
            )
        challenge = self.challenge.take()
        operators = read_operators(self.state_dir / OPERATORS_FILE)
        try:
            if not operators:
                raise ConsoleError(
                    "no_operators",
                    "this finished pole holds no city operator keys, so nothing can "
                    "authorise changes over the console",
                    "it was finished by older software or its operators.json is damaged: "
                    "have it re-imaged at the workshop",
                )
            name = check_authorisation(
                token,
                operators,
                pole_id=ident.pole_id,
                command=command,
                challenge=challenge,
                now=time.time(),
            )
        except ConsoleError as exc:
            if exc.code != "no_operators":
                exc.next_step += "; " + self._ask_the_city(ident.pole_id, command)
            raise
        log.info("console: %s on %s authorised by operator %s", command, ident.pole_id, name)

    def _ask_the_city(self, pole_id: str, command: str) -> str:
        ch = self.challenge.current().hex()
        return (
            f"ask the city for an authorisation: pole-admin operator authorise {pole_id} "
            f"{command} --challenge {ch} --out {command.lower()}.auth, then run again with "
            f"--authorisation {command.lower()}.auth (or --operator-key DIR if you hold a "
            f"city operator key); the challenge is valid for {self.challenge.ttl_s / 60:g} min"
        )

    # -- commands -------------------------------------------------------------------
    def cmd_hello(self, args: dict) -> dict:
        only(args, frozenset(), "HELLO")
        out = {"protocol": PROTOCOL, "software": "lightpole-edge " + __version__, **self.status()}
        if out["provisioned"]:
            out["challenge"] = self.challenge.current().hex()
            out["challenge_ttl_s"] = self.challenge.ttl_s
        return out

    def cmd_keygen(self, args: dict) -> dict:
        only(args, {"pole_id"}, "KEYGEN")
        try:
            pole_id = check_pole_id(args.get("pole_id"))
        except InvalidName as exc:
            raise ConsoleError(
                "bad_pole_id", str(exc), "use letters, digits and '-', e.g. nl-ehv-00042"
            ) from None
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
        """Write the pole's TOML. ``dry_run``: only say whether it would change (so a
        resumed provisioning of a finished pole needs no authorisation for no change)."""
        ident = self._require_identity(args.get("pole_id"))
        cfg = configuration(args, ident.pole_id, self.state_dir, self.state_dir / PASSWORD_FILE)
        text = render_config(cfg)
        import tomllib

        from edge.config import ConfigError, PoleConfig

        parsed = tomllib.loads(text)
        if parsed != cfg:  # the writer's output must mean exactly what was checked
            raise ConsoleError("bad_config", "the configuration does not survive TOML")
        try:  # refuse what the daemon would refuse, before writing it
            PoleConfig(parsed, base_dir=self.config_path.parent)
        except (ConfigError, OSError, ValueError) as exc:
            reason = scrub(str(exc), cfg)
            raise ConsoleError(
                "bad_config", f"the daemon would refuse it: {reason}", "fix the value"
            ) from None
        changed = self._current_config() != cfg
        if changed and args.get("dry_run") is not True:
            self.config_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.config_path, text.encode())
        return {"config": str(self.config_path), "changed": changed}

    def _current_config(self) -> dict | None:
        import tomllib

        try:
            return tomllib.loads(self.config_path.read_text())
        except (OSError, ValueError):
            return None

    def cmd_pubkey(self, args: dict) -> dict:
        only(args, {"pole_id", "nonce"}, "PUBKEY")
        ident = self._require_identity(args.get("pole_id"))
        nonce_hex = args.get("nonce")
        if not (
            isinstance(nonce_hex, str)
            and 32 <= len(nonce_hex) <= 128
            and len(nonce_hex) % 2 == 0
            and all(c in HEX for c in nonce_hex)
        ):
            raise ConsoleError("bad_request", "PUBKEY needs a fresh nonce of 16 to 64 bytes (hex)")
        nonce = bytes.fromhex(nonce_hex)
        sk = crypto_sign_seed_keypair(ident.seed)[1]
        msg = registration_proof_message(ident.pole_id, ident.public_key, nonce)
        return {**ident.public_record(), "proof": crypto_sign(msg, sk)[:64].hex()}

    def cmd_credentials(self, args: dict) -> dict:
        only(args, {"pole_id", "password", "auth"}, "CREDENTIALS")
        self._require_identity(args.get("pole_id"))
        password = args.get("password")
        if not (
            isinstance(password, str)
            and 16 <= len(password) <= 256
            and all(c in PRINTABLE for c in password)
        ):
            raise ConsoleError(
                "bad_request", "CREDENTIALS needs the broker password (16+ printable characters)"
            )
        path = self.state_dir / PASSWORD_FILE
        atomic_write(path, (password + "\n").encode(), mode=0o600)
        return {"password_file": str(path)}

    def cmd_operators(self, args: dict) -> dict:
        """Install the city's operator public keys (operators.json, mode 0644): the keys
        whose authorisations this pole accepts once it is finished."""
        only(args, {"pole_id", "operators", "auth", "dry_run"}, "OPERATORS")
        self._require_identity(args.get("pole_id"))
        ops = operator_list(args.get("operators"))
        doc = {"format": OPERATORS_FORMAT, "version": 1, "operators": ops}
        path = self.state_dir / OPERATORS_FILE
        wanted = {bytes.fromhex(o["kid"]): (o["name"], bytes.fromhex(o["public_key"])) for o in ops}
        changed = wanted != read_operators(path)
        if changed and args.get("dry_run") is not True:
            atomic_write(path, (json.dumps(doc, indent=2) + "\n").encode(), mode=0o644)
        return {
            "operators_file": str(path),
            "changed": changed,
            "operators": [o["name"] for o in ops],
        }

    def cmd_finish(self, args: dict) -> dict:
        only(args, {"pole_id"}, "FINISH")
        ident = self._require_identity(args.get("pole_id"))
        status = self.status()
        missing = [k for k in ("configured", "credentials", "operators") if not status[k]]
        if missing:
            raise ConsoleError(
                "incomplete",
                f"not yet done: {', '.join(missing)}",
                "run pole-admin provision again (an up-to-date pole-admin installs the city's "
                "operator keys)",
            )
        record = {"pole_id": ident.pole_id, "kid": ident.kid.hex(), "at": time.time()}
        if not self.finished():
            atomic_write(self.state_dir / PROVISIONED_FILE, json.dumps(record).encode())
        return {"provisioned": True}

    def cmd_wipe(self, args: dict) -> dict:
        """Decommission: destroy the key (overwritten, then removed) and the secrets."""
        only(args, {"pole_id", "auth"}, "WIPE")
        self._require_identity(args.get("pole_id"))
        key = self.state_dir / KEY_FILE
        fd = os.open(key, os.O_RDWR | os.O_NOFOLLOW)
        try:
            os.write(fd, os.urandom(32))
            os.fsync(fd)
        finally:
            os.close(fd)
        for name in (KEY_FILE, PASSWORD_FILE, PROVISIONED_FILE, PUB_FILE, OPERATORS_FILE):
            with contextlib.suppress(FileNotFoundError):
                (self.state_dir / name).unlink()
        with contextlib.suppress(FileNotFoundError):
            self.config_path.unlink()
        self.challenge.forget()
        return {"wiped": True}

    COMMANDS = {
        "HELLO": cmd_hello,
        "KEYGEN": cmd_keygen,
        "CONFIGURE": cmd_configure,
        "PUBKEY": cmd_pubkey,
        "CREDENTIALS": cmd_credentials,
        "OPERATORS": cmd_operators,
        "FINISH": cmd_finish,
        "WIPE": cmd_wipe,
    }

    def _dispatch(self, cmd: str, args: dict) -> dict:
        fn = self.COMMANDS.get(cmd)
        if fn is None:
            raise ConsoleError("unknown", f"unknown command {describe(cmd)}", "update pole-admin")
        dry = args.get("dry_run", False)
        if not isinstance(dry, bool) or (dry and cmd not in ("CONFIGURE", "OPERATORS")):
            raise ConsoleError("bad_request", f"dry_run is {describe(dry)}: true or false")
        if cmd in GUARDED and self.finished() and not dry:  # a dry run changes nothing
            self._authorise(cmd, args)
        return fn(self, args)

    def handle(self, line: str) -> bytes | None:
        """One request line in, one response frame out (None: not for us). Never raises:
        whatever arrives, the console keeps answering."""
        try:
            return self._handle(line)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            log.error("console: internal error (%s) on a request", type(exc).__name__)
            err = {
                "code": "internal",
                "message": f"the controller failed on this request ({type(exc).__name__})",
                "next": "run the command again; if it repeats, report it with the controller's log",
            }
            return frame(RESPONSE, "0 ERR " + json.dumps(err))

    def _handle(self, line: str) -> bytes | None:
        if not isinstance(line, str):
            return None
        if len(line) > MAX_LINE:
            if not line.lstrip().startswith(REQUEST + " "):
                return None
            err = {"code": "too_long", "message": "the request line is too long", "next": ""}
            return frame(RESPONSE, "0 ERR " + json.dumps(err))
        try:
            body = unframe(REQUEST, line)
        except ValueError as exc:
            err = {"code": "damaged", "message": str(exc), "next": "the laptop retries"}
            return frame(RESPONSE, "0 ERR " + json.dumps(err))
        if body is None:
            return None
        seq, _, rest = body.partition(" ")
        cmd, _, arg_text = rest.partition(" ")
        if not (seq.isdigit() and len(seq) <= 10):  # echoed back: only digits may be
            err = {
                "code": "bad_request",
                "message": "the sequence number is not a number",
                "next": "update pole-admin",
            }
            return frame(RESPONSE, "0 ERR " + json.dumps(err))
        try:
            result = self._dispatch(cmd, parse_args(arg_text))
            return frame(RESPONSE, f"{seq} OK {json.dumps(result, sort_keys=True)}")
        except ConsoleError as exc:
            err = {"code": exc.code, "message": exc.message, "next": exc.next_step}
        except InvalidName as exc:
            err = {"code": "bad_name", "message": str(exc), "next": "fix the name and run again"}
        except OSError as exc:  # a full or read-only disk: say so, keep answering
            err = {
                "code": "storage",
                "message": f"{type(exc).__name__}: {exc.strerror or 'storage error'}",
                "next": "check the controller's storage (full? read-only?) and run again",
            }
        except ValueError as exc:
            err = {
                "code": "bad_request",
                "message": f"the request was refused ({type(exc).__name__})",
                "next": "",
            }
        log.warning("console: %s refused: %s", describe(cmd), err["message"])
        return frame(RESPONSE, f"{seq} ERR {json.dumps(err)}")

    def serve_fd(self, fd: int, stop: threading.Event | None = None) -> None:
        """Serve requests on a serial/pty file descriptor until ``stop`` is set (or EOF)."""
        buf = b""
        discarding = False  # inside a line that was too long: drop it up to its end
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
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                if discarding:
                    discarding = False
                    continue
                out = self.handle(raw[: MAX_LINE + 1].decode("ascii", "replace"))
                if out is not None:
                    _send(fd, out)
            if len(buf) > MAX_LINE:
                buf = b""  # garbage without a line end: drop it, and the rest of its line
                discarding = True


def _send(fd: int, data: bytes, timeout_s: float = 2.0) -> None:
    """Write an answer; if nobody reads the line for ``timeout_s``, drop it rather than
    block the console for good."""
    while data:
        _, ready, _ = select.select([], [fd], [], timeout_s)
        if not ready:
            log.warning("console: nobody reads the line; an answer was dropped")
            return
        try:
            n = os.write(fd, data)
        except OSError:
            return  # hung up: the laptop asks again
        data = data[n:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="pole-console",
        description="Answer 'pole-admin provision' on this controller's serial console.",
    )
    ap.add_argument("--port", required=True, help="the console device, e.g. /dev/ttyS0")
    ap.add_argument("--config", type=Path, required=True, help="the pole's TOML file to write")
    ap.add_argument("--state-dir", type=Path, required=True, help="where the key lives")
    ap.add_argument(
        "--challenge-ttl",
        type=float,
        default=CHALLENGE_TTL_S,
        help=f"seconds a challenge for an authorisation stays usable (default {CHALLENGE_TTL_S:g})",
    )
    ap.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="how much to log (default INFO)",
    )
    a = ap.parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), format="%(levelname)s %(message)s")
    fd = os.open(a.port, os.O_RDWR | os.O_NOCTTY)
    if os.isatty(fd):
        tty.setraw(fd, termios.TCSANOW)  # no echo, no line editing: frames pass untouched
    agent = ConsoleAgent(a.state_dir, a.config, challenge_ttl_s=a.challenge_ttl)
    log.info("provisioning console on %s (%s)", a.port, json.dumps(agent.status()))
    try:
        agent.serve_fd(fd)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

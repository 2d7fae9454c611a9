"""The laptop's side of the provisioning console (edge/console.py): one request, one answer.

Every console command is idempotent, so a lost or damaged answer is simply asked again.
Lines that are not our frames (kernel messages, a login prompt) are skipped.
"""

from __future__ import annotations

import json
import time

import serial

from edge.console import REQUEST, RESPONSE, frame, unframe


def printable(value: object, limit: int = 2000) -> str:
    """Text from the controller, safe for the technician's terminal: no control
    characters (escape sequences), bounded."""
    text = value if isinstance(value, str) else str(value)
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


class ProvisionError(Exception):
    """Provisioning stopped; ``next_step`` tells the technician what to do about it."""

    def __init__(self, message: str, next_step: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.next_step = next_step


class ConsoleRefused(ProvisionError):
    def __init__(self, code: str, message: str, next_step: str) -> None:
        super().__init__(message, next_step)
        self.code = code


class ConsoleClient:
    def __init__(self, port: str, baud: int = 115200, timeout_s: float = 5.0, tries: int = 3):
        try:
            self.ser = serial.Serial(port, baudrate=baud, timeout=0.1)
        except (serial.SerialException, OSError) as exc:
            raise ProvisionError(
                f"cannot open the serial console {port}: {exc}",
                "check the cable and the device name (ls /dev/ttyUSB* /dev/ttyACM*), and that "
                "your user may use it (group dialout)",
            ) from None
        self.port = port
        self.timeout_s = timeout_s
        self.tries = tries
        self.seq = int(time.time()) % 100000
        self.ser.reset_input_buffer()

    def close(self) -> None:
        self.ser.close()

    def __enter__(self) -> ConsoleClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, command: str, args: dict | None = None, *, once: bool = False) -> dict:
        """Send one command; returns its result or raises ConsoleRefused/ProvisionError.

        ``once``: for a command carrying a one-time authorisation. It is sent again only
        when the controller said the request arrived damaged (then it did not use the
        authorisation); after silence it is not, because the controller may have used it.
        A pulled cable (the device vanishes, a read or write fails) ends in a sentence on
        what to check, never a traceback.
        """
        try:
            return self._request(command, args, once)
        except (serial.SerialException, OSError) as exc:
            raise ProvisionError(
                f"the serial console {self.port} went away during {command} "
                f"({type(exc).__name__}: {printable(str(exc))[:80]})",
                "check the cable and its connector at both ends (was it pulled?), plug it "
                "back in and run the same command again: it resumes where it stopped",
            ) from None

    def _request(self, command: str, args: dict | None, once: bool) -> dict:
        last = "no answer"
        for _ in range(self.tries):
            self.seq += 1
            seq = str(self.seq)
            body = f"{seq} {command} {json.dumps(args or {}, sort_keys=True)}"
            self.ser.write(frame(REQUEST, body))
            self.ser.flush()
            deadline = time.monotonic() + self.timeout_s
            buf = b""
            while time.monotonic() < deadline:
                buf += self.ser.read(4096)
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    try:
                        reply = unframe(RESPONSE, raw.decode("ascii", "replace"))
                    except ValueError as exc:
                        last = str(exc)
                        continue  # a damaged answer: wait out this try, then ask again
                    if reply is None:
                        continue  # not ours
                    rseq, _, rest = reply.partition(" ")
                    status, _, data = rest.partition(" ")
                    try:  # the controller is outside the laptop: read its answer warily
                        result = json.loads(data or "{}")
                    except (ValueError, RecursionError):
                        result = None
                    if not isinstance(result, dict):
                        last = "an unreadable answer"
                        continue
                    if rseq == "0" and result.get("code") == "damaged":
                        last = result.get("message", "damaged request")
                        deadline = 0  # the controller saw noise: ask again now
                        break
                    if rseq != seq:
                        continue  # an answer to an earlier, retried request
                    if status == "OK":
                        return result
                    raise ConsoleRefused(
                        printable(result.get("code", "error")),
                        printable(result.get("message", "refused")),
                        printable(result.get("next", "")),
                    )
            if once and deadline:  # silence, not a damaged request: do not send it again
                raise ProvisionError(
                    f"the controller on {self.port} did not answer {command} ({last})",
                    "run the same command again: it checks what was done; if the pole asks "
                    "for an authorisation again, the one you had was used",
                )
        raise ProvisionError(
            f"the controller on {self.port} did not answer {command} ({last})",
            "check that the controller is powered and its console service runs "
            "(pole-console), then run the same command again: it resumes",
        )

"""``pole-admin trust sync``: offline registrations into the trust list, after checks.

Each ``*.lpreg`` file is checked (docs: provisioning/registration.py) and, when it
holds, its key is registered and its broker password hash installed. Accepted files
are moved to ``synced/`` next to them, rejected ones stay where they are, so running
the sync again is harmless and shows what is still wrong.

The folder is a drop box (a USB stick, a shared drive), so anything may lie in it:
only regular files are read (never through a symbolic link, never a FIFO, device,
socket or directory, each checked on the open file descriptor), at most
``MAX_SIZE`` bytes each; every bad file is reported and skipped. Each registration is
checked completely before anything changes (a revoked key, a key of another pole, a
broker password older than the one set last), so a refused file changes nothing.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from edge.names import InvalidName
from provisioning.broker_auth import READER, BrokerAuth, BrokerAuthError
from provisioning.registration import MAX_SIZE, SUFFIX, RegistrationError, read_registration
from provisioning.trustlist import TrustError, TrustList

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def shown(path: Path) -> str:
    """A file name safe to print: as is when printable, else with the odd characters
    replaced (a name in a drop folder may carry terminal escapes or invalid UTF-8)."""
    name = path.name
    if name.isprintable() and name.encode("utf-8", "surrogateescape").isascii():
        return name
    return "".join(c if c.isprintable() and c.isascii() else "?" for c in name)


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():  # the folder named on the command line may be a link (a mount)
            with os.scandir(p) as it:
                names = sorted(e.name for e in it if e.name.endswith(SUFFIX))
            out += [p / n for n in names]
        elif os.path.lexists(p):
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    return out


def read_regular(path: Path, limit: int = MAX_SIZE) -> tuple[bytes, os.stat_result]:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes, else
    RegistrationError. Never follows a link, never blocks on a FIFO, never opens a device."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise RegistrationError(f"cannot read it ({exc.strerror})") from None
    if stat.S_ISLNK(st.st_mode):
        raise RegistrationError(
            "a symbolic link, not a registration file: copy the file itself into the folder"
        )
    for test, what in _KINDS:
        if test(st.st_mode):
            raise RegistrationError(f"{what}, not a registration file")
    if not stat.S_ISREG(st.st_mode):
        raise RegistrationError("not a regular file")
    if st.st_size > limit:
        raise RegistrationError(
            f"{st.st_size} bytes: too large for a registration (at most {limit} bytes)"
        )
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RegistrationError("became a symbolic link while being read") from None
        raise RegistrationError(f"cannot read it ({exc.strerror})") from None
    try:
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
            raise RegistrationError("replaced while being read: run the sync again")
        if fst.st_size > limit:
            raise RegistrationError(
                f"{fst.st_size} bytes: too large for a registration (at most {limit} bytes)"
            )
        chunks, got = [], 0
        while got <= limit:
            chunk = os.read(fd, limit + 1 - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except OSError as exc:
        raise RegistrationError(f"cannot read it ({exc.strerror})") from None
    finally:
        os.close(fd)
    if got > limit:
        raise RegistrationError(f"grew past {limit} bytes while being read")
    return b"".join(chunks), fst


def _precheck(body: dict, trust: TrustList, auth: BrokerAuth | None) -> tuple[list, str | None]:
    """Everything that would refuse this registration, before anything changes.
    Returns (the pole's other active keys, broker verdict "new"/"same"/None)."""
    pole_id, pk = body["pole_id"], body["public_key"]
    records = trust.records()
    for r in records:
        if r.public_key != pk:
            continue
        if r.pole_id != pole_id:
            raise RegistrationError(
                f"this key is already registered for pole {r.pole_id}; a key speaks for one "
                "pole only"
            )
        if not r.active:
            raise RegistrationError(
                f"the key in this registration (kid {r.kid.hex()}) was revoked: a revoked key "
                "is never registered again; generate a new key on the controller"
            )
    others = [r for r in records if r.pole_id == pole_id and r.active and r.public_key != pk]
    if others and body.get("replaces") is not True:
        raise RegistrationError(
            f"pole {pole_id} already has another active key; a replacement controller "
            "must be registered with 'pole-admin replace-controller'"
        )
    if auth is not None and auth.role(pole_id) == READER:
        raise RegistrationError(
            f"{pole_id} is one of the city's reader accounts, not a pole: a registration "
            "cannot take its name"
        )
    verdict = None
    if auth is not None and "broker_hash" in body:
        try:
            verdict = auth.fresh_enough(pole_id, body["recorded"], body["broker_hash"])
        except BrokerAuthError as exc:
            raise RegistrationError(str(exc)) from None
    return others, verdict


def _sync_one(path: Path, trust: TrustList, auth: BrokerAuth | None) -> str:
    data, st = read_regular(path)
    body, tech = read_registration(data, trust.technician)
    others, verdict = _precheck(body, trust, auth)
    pole_id, pk = body["pole_id"], body["public_key"]
    rec = trust.add(pole_id, pk, note=f"offline registration by {tech}")
    for r in others:
        trust.revoke(kid=r.kid.hex())
    msg = f"{pole_id} kid {rec.kid.hex()} active (recorded by {tech})"
    if others:
        msg += f"; revoked {len(others)} old key(s)"
    if auth is not None and verdict is not None:
        try:
            changed = auth.set_hash(pole_id, body["broker_hash"], recorded=body["recorded"])
        except (BrokerAuthError, OSError) as exc:  # changed since the pre-check
            return msg + f"; broker password NOT installed: {exc}"
        msg += "; broker password installed" if changed else "; broker password already installed"
    return msg + _move_to_synced(path, st)


def _move_to_synced(path: Path, st: os.stat_result) -> str:
    """Synced files go to synced/ beside them (a file synced from there stays put)."""
    if path.parent.name == "synced":
        return ""
    done = path.parent / "synced"
    try:
        if not os.path.lexists(done):
            done.mkdir()
        dst = os.lstat(done)
        if stat.S_ISLNK(dst.st_mode) or not stat.S_ISDIR(dst.st_mode):
            return "; left in place: synced/ is not a plain directory"
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return "; left in place: the file was replaced meanwhile"
        os.replace(path, done / path.name)
    except OSError as exc:
        return f"; left in place: cannot move it to synced/ ({exc.strerror})"
    return ""


def sync_registrations(
    paths: list[Path], trust: TrustList, broker_dir: Path | None, topic_prefix: str = "poles"
) -> list[tuple[Path, bool, str]]:
    """[(file, accepted, what happened)] for every registration file found.

    A bad file never stops the others: each is reported with its reason and skipped.
    """
    auth = BrokerAuth(broker_dir, topic_prefix=topic_prefix) if broker_dir else None
    results = []
    for path in _files(paths):
        try:
            results.append((path, True, _sync_one(path, trust, auth)))
        except (RegistrationError, TrustError, InvalidName, BrokerAuthError) as exc:
            results.append((path, False, str(exc)))
        except OSError as exc:
            results.append((path, False, f"cannot process it ({exc.strerror})"))
        except Exception as exc:  # noqa: BLE001 - one odd file must not stop the others
            results.append(
                (path, False, f"internal error ({type(exc).__name__}); please report it")
            )
    return results

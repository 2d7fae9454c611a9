"""The pole's persistent state: its identity key and its never-repeating counters.

Writes are crash-safe (write to a temporary file, fsync, rename, fsync the
directory), because poles on switched lighting circuits lose power every morning
and a counter that goes backwards would let a signed message be replayed.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from nacl.bindings import crypto_sign_seed_keypair

from edge.cose import fingerprint, kid_for

KEY_FILE = "identity.key"
PUB_FILE = "identity.json"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that after a power cut it holds old or new, never half."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # exactly ``mode``, whatever the umask or a stale temp file
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class Identity:
    """The pole's Ed25519 key pair; the private half never leaves ``state_dir``."""

    def __init__(self, pole_id: str, seed: bytes) -> None:
        self.pole_id = pole_id
        self.seed = seed
        self.public_key = crypto_sign_seed_keypair(seed)[0]
        self.kid = kid_for(self.public_key)
        self.fingerprint = fingerprint(self.public_key)

    def __repr__(self) -> str:  # never show the seed, even in a traceback
        return f"Identity(pole_id={self.pole_id!r}, kid={self.kid.hex()})"

    def public_record(self) -> dict:
        return {
            "pole_id": self.pole_id,
            "kid": self.kid.hex(),
            "public_key": self.public_key.hex(),
            "fingerprint": self.fingerprint,
            "alg": "EdDSA",
        }


def write_new_secret(path: Path, data: bytes) -> None:
    """Create ``path`` holding ``data``, mode 0600 whatever the umask, fsynced; refuses to
    overwrite (FileExistsError): a key is never replaced as a side effect."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


def create_identity(state_dir: Path, pole_id: str) -> Identity:
    """Generate the key on this machine (where the pole's state lives), mode 0600.

    Refuses to overwrite an existing key: replacing a pole's key is a deliberate
    act (``pole-admin replace-controller``), not a side effect.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    seed = os.urandom(32)
    write_new_secret(state_dir / KEY_FILE, seed)
    ident = Identity(pole_id, seed)
    atomic_write(state_dir / PUB_FILE, json.dumps(ident.public_record(), indent=2).encode())
    _fsync_dir(state_dir)
    return ident


def load_identity(state_dir: Path, pole_id: str | None = None) -> Identity:
    """Load the pole's key; a clear error says what to do when it is missing or unsafe."""
    key_path = state_dir / KEY_FILE
    try:
        st = key_path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no pole identity in {state_dir}: run 'pole-admin identity create "
            f"--state-dir {state_dir} --pole-id POLE_ID' on this controller first"
        ) from None
    if st.st_mode & 0o077:
        raise PermissionError(
            f"{key_path} is readable by others (mode {st.st_mode & 0o777:o}): "
            f"run 'chmod 600 {key_path}' and check who has seen it"
        )
    seed = key_path.read_bytes()
    if len(seed) != 32:
        raise ValueError(f"{key_path} is not a 32-byte Ed25519 seed: the file is damaged")
    record = {}
    with contextlib.suppress(FileNotFoundError, ValueError):
        record = json.loads((state_dir / PUB_FILE).read_text())
    pid = pole_id or record.get("pole_id")
    if not pid:
        raise ValueError(f"{state_dir}/{PUB_FILE} names no pole id; pass --pole-id")
    return Identity(pid, seed)


class PersistentCounter:
    """A counter that survives power cuts and never hands out the same value twice.

    ``advance()`` writes the new value to disk (fsynced) *before* returning it, so a
    crash right after use still finds it used.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.value = self._load()

    def _load(self) -> int:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return 0
        try:
            return int(text)
        except ValueError:
            raise ValueError(
                f"{self.path} is damaged ({len(text)} bytes, not a number): restore it from "
                "backup or set it above any value used before; starting from 0 would reuse "
                "message counters"
            ) from None

    def advance(self) -> int:
        """The next value, on disk before it is returned. On a write error (OSError) the
        value is still consumed in RAM, so this process never hands it out twice."""
        self.value += 1
        atomic_write(self.path, f"{self.value}\n".encode())
        return self.value

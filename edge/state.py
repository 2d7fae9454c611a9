"""The pole's persistent state: its identity key and its never-repeating counters.

Writes are crash-safe (write to a temporary file, fsync, rename, fsync the
directory), because poles on switched lighting circuits lose power every morning
and a counter that goes backwards would let a signed message be replayed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from pathlib import Path

from nacl.bindings import crypto_sign_seed_keypair

from edge.cose import fingerprint, kid_for

KEY_FILE = "identity.key"
PUB_FILE = "identity.json"
LOCK_FILE = "daemon.lock"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that after a power cut it holds old or new, never
    half; exactly ``mode`` whatever the umask; never through a symbolic link. The
    temporary file has a fresh random name and is created exclusively without following
    links, so a link planted beside the file cannot redirect the write; a link at
    ``path`` itself is replaced, not followed. The one way the project writes a file."""
    tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def create_empty(path: Path, mode: int) -> None:
    """Create ``path`` as an empty file of exactly ``mode`` whatever the umask, unless it
    exists (never through a link): for files another library then fills, such as an
    SQLite database (which would create it 0666 less the umask)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def read_private(path: Path, limit: int = 4096) -> bytes:
    """The bytes of a small secret file (a key, a password), never through a symbolic link
    and only from a regular file of at most ``limit`` bytes: a key path swapped for a link
    to another file, or for a FIFO, is refused rather than read."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{path} is not a regular file")
        if st.st_mode & 0o077:
            raise PermissionError(
                f"{path} is readable by others (mode {st.st_mode & 0o777:o}): "
                f"run 'chmod 600 {path}' and check who has seen it"
            )
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"{path} is larger than a secret file can be")
    return data


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
    overwrite (FileExistsError): a key is never replaced as a side effect (O_EXCL also
    refuses a symbolic link planted at ``path``)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
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
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
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
        seed = read_private(key_path, 64)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no pole identity in {state_dir}: run 'pole-admin identity create "
            f"--state-dir {state_dir} --pole-id POLE_ID' on this controller first"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PermissionError(
                f"{key_path} is a symbolic link: a key is never read "
                "through one; put the key file itself there"
            ) from None
        raise
    if len(seed) != 32:
        raise ValueError(f"{key_path} is not a 32-byte Ed25519 seed: the file is damaged")
    record = {}
    with contextlib.suppress(FileNotFoundError, ValueError):
        record = json.loads((state_dir / PUB_FILE).read_text())
    recorded = record.get("pole_id")
    if pole_id and isinstance(recorded, str) and recorded != pole_id:
        raise ValueError(
            f"the key in {state_dir} belongs to pole {recorded}, not {pole_id}: every "
            f"message would be rejected by the city. Fix pole_id in the config, or give "
            f"this pole its own state_dir (pole-admin replace-controller for a new key)"
        )
    pid = pole_id or recorded
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


class StateLocked(RuntimeError):
    """Another daemon holds this state dir; two would reuse counters and sessions."""

    def __init__(self, state_dir: Path, pid: str) -> None:
        super().__init__(
            f"another pole-edge (pid {pid or 'unknown'}) is already running on {state_dir}: "
            "two daemons on one state dir would publish the same bdSeq and knock each other "
            "off the broker. Stop it first (systemctl stop pole-edge), or give this one its "
            "own state_dir"
        )
        self.pid = pid


class StateLock:
    """An exclusive lock on a pole's state dir for as long as its daemon runs (flock: the
    kernel drops it when the process dies, so a power cut or SIGKILL leaves no stale
    lock). The holder's pid is written into the lock file for the error message.

    On a medium that has gone read-only or full (an SD card remounts itself read-only)
    the daemon must still run: an existing lock file is then locked through a read-only
    descriptor (flock does not need write access), and without one an abstract socket
    named after the state dir serves as the lock (Linux; also dropped at process death).
    """

    def __init__(self, state_dir: Path) -> None:
        import fcntl

        self.path = state_dir / LOCK_FILE
        self._fd: int | None = None
        self._sock = None
        with contextlib.suppress(OSError):
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        flags = os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | flags, 0o644)
            writable = True
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.ENOSPC, errno.EACCES, errno.EDQUOT):
                raise
            try:
                fd = os.open(self.path, os.O_RDONLY | flags)
                writable = False
            except FileNotFoundError:
                self._socket_lock(state_dir)
                return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise StateLocked(state_dir, holder if holder.isdigit() else "") from None
        if writable:
            with contextlib.suppress(OSError):  # a full disk: the lock holds without the pid
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _socket_lock(self, state_dir: Path) -> None:
        import hashlib
        import socket

        name = "\0lightpole-state-" + hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(name)
        except OSError:
            sock.close()
            raise StateLocked(state_dir, "") from None
        self._sock = sock

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

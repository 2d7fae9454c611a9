"""Broker accounts for Mosquitto: who may connect, and what each account may touch.

Two kinds of account, nothing else:

- a **pole**: its user name is its pole id; it may write below ``<prefix>/<pole id>/#``
  and read nothing;
- a **reader** (one of the city's verifiers or commissioning laptops): it may read
  ``<prefix>/#`` and publish nothing. A shared subscription (``$share/<group>/...``)
  needs no rule of its own: Mosquitto checks every delivery against the message's real
  topic, so ``topic read <prefix>/#`` lets a reader take part in a ``$share`` group on
  pole topics and nothing more (tests/test_broker_acl.py shows it on a real broker).

Every account gets its own ``user`` section in the ACL file; there are no ``pattern``
lines, because Mosquitto applies a pattern to *every* client, readers included (a
``pattern write poles/%u/#`` lets a reader named ``r`` publish on ``poles/r/...``).

``mosquitto_config()`` binds client ids to user names (``use_username_as_clientid``):
nobody can take over another account's session or fire its will by reusing its client
id. The price: one account is one connection. Several verifier workers (a ``$share``
group, persistent sessions) need one reader account each, so their sessions do not
take each other over; ``add_readers("city-ingest", 3)`` makes ``city-ingest-1`` to
``-3``. The broker also refuses packets over ``MAX_PACKET_SIZE`` (the pole's own limit,
``edge.transport.mqtt``); every client should send it as its MQTT 5 Maximum Packet Size.

One writer, ``BrokerAuth._commit``, writes every file here: it checks every user name
with the one name rule (``edge.names.check_id``), refusing what breaks it, never
escaping; it writes each file whole or not at all (temporary file, fsync, rename), with
an exact mode whatever the umask, and never writes through a symbolic link (the
temporary file is created with O_EXCL|O_NOFOLLOW; ``rename`` replaces a link at the
destination instead of following it). Files:

- ``passwd``  Mosquitto's password_file (``user:$7$...``), mode 0600: hashes of secrets.
- ``acl``     Mosquitto's acl_file, mode 0600: it lists every account and which ones can
              read every pole's data (a target list), only the broker needs it, and
              Mosquitto 2.0.16+ warns that it will refuse world-readable auth files.
- ``accounts.json``  each account's role and when its password was last set (or when it
              was removed), mode 0600. ``trust sync`` compares a registration's
              ``recorded`` time with it, so a replayed older registration never
              reinstalls a password that a later reset (or removal) replaced.

Written in that order, passwd last: a watcher that reloads Mosquitto when passwd
changes (``pole-sim city``) always finds the ACL for it; a crash in between leaves an
account that cannot log in, or one that can do nothing, never one that can do more.
Password hashes use Mosquitto 2's own format (``$7$``: PBKDF2-HMAC-SHA512). Plain
passwords are only ever written to a 0600 file for their owner, never printed or logged.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from edge.names import InvalidName, check_id
from edge.state import atomic_write

# One truth for the packet limit: the pole's own (MQTT 5 Maximum Packet Size in its
# CONNECT). A signed full-sensor data message is ~3.7 kB, the manifest a few kB; 32 KiB
# leaves room and stops anything larger at the broker, before it reaches a subscriber.
from edge.transport.mqtt import MAX_PACKET_SIZE

ITERATIONS = 101  # what mosquitto_passwd 2.0 uses
MAX_ITERATIONS = 10_000  # a hash from a registration must not make each login expensive

POLE = "pole"
READER = "reader"
_REMOVED = "removed"
ACCOUNTS_FORMAT = "lightpole-broker-accounts"

# $7$<iterations>$<base64 of the 12-byte salt>$<base64 of the 64-byte key>
_HASH = re.compile(r"\$7\$([1-9][0-9]{0,5})\$([A-Za-z0-9+/]{16})\$([A-Za-z0-9+/]{86}==)")


class BrokerAuthError(ValueError):
    """A broker account change that must not happen; the message says why and what to do."""


class StaleCredential(BrokerAuthError):
    """A password older than the one already set (or than the account's removal)."""


def password_hash(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    salt = salt or os.urandom(12)
    dk = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(dk).decode()}"


def check_hash(value: object) -> str:
    """``value`` if it is a Mosquitto ``$7$`` hash as ``password_hash`` makes them (12-byte
    salt, 64-byte key, at most MAX_ITERATIONS rounds), else BrokerAuthError."""
    m = _HASH.fullmatch(value) if isinstance(value, str) else None
    if m is None or int(m.group(1)) > MAX_ITERATIONS:
        raise BrokerAuthError(
            "not a Mosquitto $7$ password hash (12-byte salt, 64-byte key, at most "
            f"{MAX_ITERATIONS} iterations)"
        )
    return value  # type: ignore[return-value]


def write_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` (edge.state.atomic_write: whole or not at all,
    exactly ``mode``, never through a symbolic link). The one way files here are written."""
    atomic_write(path, data, mode)


def write_secret(path: Path, text: str) -> None:
    """A plain password for its owner: mode 0600, written whole, never through a link."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(path, text.encode(), 0o600)


def _read_small(path: Path, limit: int = 16 * 1024 * 1024) -> str | None:
    """Our own file's text, or None when it is absent; refuses links and non-files."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BrokerAuthError(
            f"{path}: cannot open it ({exc.strerror}); a symbolic link is refused: "
            "replace it with the file itself"
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            raise BrokerAuthError(f"{path} is not a regular file of sane size: replace it")
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode()
    except UnicodeDecodeError:
        raise BrokerAuthError(f"{path} is not UTF-8 text: restore it from backup") from None


def _check_user(user: object) -> str:
    return check_id(user, "broker user")


def _check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str):
        raise InvalidName("topic prefix is not text")
    for level in prefix.split("/"):
        check_id(level, "topic prefix level")
    return prefix


class Account:
    """One broker account: its role and when its password was last set."""

    __slots__ = ("name", "role", "set_at", "pw_hash")

    def __init__(self, name: str, role: str, set_at: float, pw_hash: str | None) -> None:
        self.name = name
        self.role = role
        self.set_at = set_at
        self.pw_hash = pw_hash

    def __repr__(self) -> str:  # never the hash
        return f"Account({self.name!r}, {self.role}, set_at={self.set_at})"


class BrokerAuth:
    """The ``passwd``, ``acl`` and ``accounts.json`` files in one directory.

    Args:
        directory: where the files live (created on the first change, mode 0700).
        topic_prefix: the first topic level(s) of every pole topic (``poles``).
    """

    def __init__(self, directory: Path, topic_prefix: str = "poles") -> None:
        self.dir = Path(directory)
        self.prefix = _check_prefix(topic_prefix)
        self.passwd = self.dir / "passwd"
        self.acl = self.dir / "acl"
        self.accounts_file = self.dir / "accounts.json"

    # -- reading -----------------------------------------------------------------------------
    def _hashes(self) -> dict[str, str]:
        text = _read_small(self.passwd)
        out: dict[str, str] = {}
        for n, line in enumerate((text or "").splitlines(), 1):
            if not line or line.startswith("#"):
                continue
            user, sep, h = line.partition(":")
            try:
                _check_user(user)
            except InvalidName:
                raise BrokerAuthError(
                    f"{self.passwd} line {n}: the user name breaks the name rule; remove "
                    "the line (or fix the name) by hand, then run the command again"
                ) from None
            if not sep or not h or any(c.isspace() for c in h) or user in out:
                raise BrokerAuthError(
                    f"{self.passwd} line {n}: not a 'user:hash' line of a new user; fix it"
                )
            out[user] = h
        return out

    def _meta(self) -> dict[str, tuple[str, float]]:
        """name -> (role, set or removal time) from accounts.json (or the old ``readers``)."""
        text = _read_small(self.accounts_file)
        if text is None:
            readers = _read_small(self.dir / "readers") or ""
            when = self._passwd_mtime()
            out = {}
            for r in readers.split():
                try:
                    out[_check_user(r)] = (READER, when)
                except InvalidName:
                    raise BrokerAuthError(
                        f"{self.dir / 'readers'}: a name breaks the name rule; fix it by hand"
                    ) from None
            return out
        bad = BrokerAuthError(f"{self.accounts_file} is damaged: restore it from backup")
        try:
            doc = json.loads(text)
        except ValueError:
            raise bad from None
        if not isinstance(doc, dict) or doc.get("format") != ACCOUNTS_FORMAT:
            raise bad
        accounts = doc.get("accounts")
        if not isinstance(accounts, dict):
            raise bad
        out = {}
        for name, rec in accounts.items():
            if not isinstance(rec, dict):
                raise bad
            role, set_at = rec.get("role"), rec.get("set")
            if role not in (POLE, READER, _REMOVED) or not isinstance(set_at, (int, float)):
                raise bad
            try:
                out[_check_user(name)] = (role, float(set_at))
            except InvalidName:
                raise bad from None
        return out

    def _passwd_mtime(self) -> float:
        try:
            return os.lstat(self.passwd).st_mtime
        except FileNotFoundError:
            return 0.0

    def _accounts(self) -> dict[str, Account]:
        """Every account, removed ones (tombstones, no hash) included."""
        hashes = self._hashes()
        meta = self._meta()
        fallback = self._passwd_mtime() if hashes else 0.0
        out = {}
        for name, (role, when) in meta.items():
            h = hashes.get(name)
            if role == _REMOVED and h is None:
                out[name] = Account(name, _REMOVED, when, None)
            elif h is not None:
                out[name] = Account(name, POLE if role == _REMOVED else role, when, h)
        for name, h in hashes.items():
            if name not in out:  # hand-made or older files: set no later than passwd's mtime
                out[name] = Account(name, POLE, fallback, h)
        return out

    def users(self) -> list[str]:
        return sorted(a.name for a in self._accounts().values() if a.pw_hash)

    def readers(self) -> list[str]:
        return sorted(a.name for a in self._accounts().values() if a.role == READER)

    def role(self, user: str) -> str | None:
        """``"pole"``, ``"reader"`` or None (no such account)."""
        acc = self._accounts().get(user)
        return acc.role if acc and acc.pw_hash else None

    def has_user(self, user: str) -> bool:
        return self.role(user) is not None

    def password_set_at(self, user: str) -> float | None:
        """When ``user``'s password was last set, or it was removed (Unix time)."""
        acc = self._accounts().get(user)
        return acc.set_at if acc else None

    def check(self, user: str, password: str) -> bool:
        """Does ``password`` match ``user``'s hash? (What Mosquitto will decide.)"""
        acc = self._accounts().get(user)
        if not acc or not acc.pw_hash:
            return False
        try:
            _, _, iterations, salt, _ = acc.pw_hash.split("$")
            if int(iterations) > MAX_ITERATIONS:
                return False
            made = password_hash(password, base64.b64decode(salt, validate=True), int(iterations))
        except (ValueError, binascii.Error):
            return False
        return secrets.compare_digest(made, acc.pw_hash)

    # -- changing ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One change at a time (provisioning, sync and the CLI may run together)."""
        if not self.dir.is_dir():
            self.dir.mkdir(parents=True, mode=0o700, exist_ok=True)
            os.chmod(self.dir, 0o700)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.dir / ".lock", flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _acl_text(self, accounts: dict[str, Account]) -> str:
        live = sorted((a for a in accounts.values() if a.pw_hash), key=lambda a: a.name)
        lines = [
            "# Generated by pole-admin broker: do not edit by hand.",
            "# No pattern lines: Mosquitto applies those to every client, readers included.",
            "# Readers (the city's verifiers) read every pole's topics and publish nothing.",
            "",
        ]
        for a in live:
            if a.role == READER:
                lines += [f"user {a.name}", f"topic read {self.prefix}/#", ""]
        lines += ["# Poles write only below their own id and read nothing.", ""]
        for a in live:
            if a.role == POLE:
                lines += [f"user {a.name}", f"topic write {self.prefix}/{a.name}/#", ""]
        return "\n".join(lines)

    def _commit(self, accounts: dict[str, Account]) -> None:
        """The one writer: validate everything, then accounts.json, acl, passwd."""
        for a in accounts.values():
            _check_user(a.name)
            if a.role not in (POLE, READER, _REMOVED):
                raise BrokerAuthError(f"{a.name}: unknown role")
            if a.pw_hash is not None and (
                not a.pw_hash or any(c.isspace() or c == ":" for c in a.pw_hash)
            ):
                raise BrokerAuthError(f"{a.name}: the password hash cannot go into a passwd line")
        doc = {
            "format": ACCOUNTS_FORMAT,
            "version": 1,
            "accounts": {
                a.name: {"role": a.role, "set": a.set_at}
                for a in sorted(accounts.values(), key=lambda a: a.name)
            },
        }
        write_file(self.accounts_file, (json.dumps(doc, indent=1) + "\n").encode(), 0o600)
        write_file(self.acl, self._acl_text(accounts).encode(), 0o600)
        passwd = "".join(
            f"{a.name}:{a.pw_hash}\n"
            for a in sorted(accounts.values(), key=lambda a: a.name)
            if a.pw_hash
        )
        write_file(self.passwd, passwd.encode(), 0o600)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.dir / "readers")  # the old sidecar, now in accounts.json

    @staticmethod
    def _role_conflict(acc: Account | None, user: str, want: str) -> None:
        if acc is None or acc.pw_hash is None or acc.role == want:
            return
        if acc.role == READER:
            raise BrokerAuthError(
                f"{user} is a reader account (one of the city's verifiers), not a pole: a "
                "pole id cannot name it; to turn it into a pole, remove it first "
                f"('pole-admin broker remove --user {user}')"
            )
        raise BrokerAuthError(
            f"{user} is a pole's account: a reader needs a name of its own (e.g. city-verifier-2)"
        )

    def add(self, user: str, reader: bool = False) -> str:
        """Create or reset ``user``'s password; returns the new plain password.

        A reader stays a reader and a pole stays a pole: asking for the other role is
        refused (BrokerAuthError), so provisioning a pole can never reset a reader.
        """
        _check_user(user)
        role = READER if reader else POLE
        password = secrets.token_urlsafe(24)
        with self._locked():
            accounts = self._accounts()
            old = accounts.get(user)
            self._role_conflict(old, user, role)
            when = max(time.time(), old.set_at if old else 0.0)
            accounts[user] = Account(user, role, when, password_hash(password))
            self._commit(accounts)
        return password

    def add_readers(self, base: str, count: int) -> dict[str, str]:
        """``count`` reader accounts ``<base>-1`` ... for verifier workers that run side by
        side (one connection per account): {user: new password}."""
        if not 0 < count <= 1000:
            raise BrokerAuthError("the number of reader accounts must be 1 to 1000")
        names = [check_id(f"{base}-{i}", "reader name") for i in range(1, count + 1)]
        return {name: self.add(name, reader=True) for name in names}

    def fresh_enough(self, user: str, recorded: float, pw_hash: str) -> str:
        """Would a password made at ``recorded`` replace ``user``'s? Returns "new",
        "same" (already installed) or raises StaleCredential / BrokerAuthError."""
        _check_user(user)
        return self._fresh(self._accounts().get(user), user, recorded, pw_hash)

    @staticmethod
    def _fresh(acc: Account | None, user: str, recorded: float, pw_hash: str) -> str:
        BrokerAuth._role_conflict(acc, user, POLE)
        if acc is None:
            return "new"
        if acc.pw_hash == pw_hash:
            return "same"
        if recorded > acc.set_at:
            return "new"
        what = "removed" if acc.pw_hash is None else "given a newer password"
        raise StaleCredential(
            f"broker user {user} was {what} at {_utc(acc.set_at)}, after this password was "
            f"made ({_utc(recorded)}): an older registration never replaces it (a replay, or "
            "superseded); reset the pole's password online or record a new registration"
        )

    def set_hash(self, user: str, pw_hash: str, recorded: float | None = None) -> bool:
        """Install a pole's password hash made elsewhere (an offline registration synced
        later). With ``recorded`` (when the hash was made), a hash older than the password
        set last, or than the account's removal, is refused (StaleCredential).
        Returns False when that very hash is already installed."""
        _check_user(user)
        check_hash(pw_hash)
        with self._locked():
            accounts = self._accounts()
            old = accounts.get(user)
            when = time.time() if recorded is None else float(recorded)
            if recorded is None:
                self._role_conflict(old, user, POLE)
                verdict = "same" if old and old.pw_hash == pw_hash else "new"
                when = max(when, old.set_at if old else 0.0)
            else:
                verdict = self._fresh(old, user, when, pw_hash)
            if verdict == "same":
                return False
            accounts[user] = Account(user, POLE, when, pw_hash)
            self._commit(accounts)
        return True

    def remove(self, user: str) -> bool:
        """Remove ``user``; remembers when, so an older registration cannot bring it back."""
        _check_user(user)
        with self._locked():
            accounts = self._accounts()
            old = accounts.get(user)
            if old is None or old.pw_hash is None:
                return False
            accounts[user] = Account(user, _REMOVED, max(time.time(), old.set_at), None)
            self._commit(accounts)
        return True

    def mosquitto_config(self) -> str:
        """The lines to add to mosquitto.conf (after the ``listener`` line when
        ``per_listener_settings`` is on)."""
        paths = []
        for p in (self.passwd, self.acl):
            s = os.path.abspath(p)
            if any(not c.isprintable() for c in s) or s != s.strip():
                raise BrokerAuthError(
                    "the broker directory's path has control characters or leading or "
                    "trailing spaces, which mosquitto.conf cannot hold: use another directory"
                )
            paths.append(s)
        return (
            "allow_anonymous false\n"
            f"password_file {paths[0]}\n"
            f"acl_file {paths[1]}\n"
            "use_username_as_clientid true\n"
            f"max_packet_size {MAX_PACKET_SIZE}\n"
        )


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))

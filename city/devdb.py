"""A throwaway PostgreSQL cluster for tests, benchmarks and demos: the database's
counterpart of ``host_sim.broker.Mosquitto``.

Debian's server binaries (``/usr/lib/postgresql/<version>/bin``), a data directory of its
own, a Unix socket in that directory and a free port, trust authentication for the
local user ``postgres``. PostgreSQL refuses to run as root, and CI runs as root: then
``initdb`` and ``pg_ctl`` run as the ``postgres`` user (``runuser``) on a directory under
/tmp that this user owns (pytest's own temporary folders are private to root).

Not for production: fsync is off unless ``durable=True`` (what the benchmark uses).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SERVICE_USER = "postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bin_dir() -> Path | None:
    """The newest installed server's bin directory, or None if there is none."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    return Path(found[-1]).parent if found else None


def missing() -> str:
    """Why a cluster cannot be started here ("" when it can)."""
    if bin_dir() is None:
        return (
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: "
            "apt-get install postgresql postgresql-15-postgis-3 (./run test does it)"
        )
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: cannot start PostgreSQL as its own user"
    return ""


def postgis_installed() -> bool:
    b = bin_dir()
    if b is None:
        return False
    share = Path("/usr/share/postgresql") / b.parent.name / "extension"
    return any(share.glob("postgis.control"))


class PostgresCluster:
    """``start()``, ``url(db)``, ``create_database(name)``, ``stop()``/``start()`` for
    outages, ``close()`` to remove everything.

    Args:
        durable: keep fsync and synchronous commits on (benchmarks); off by default.
        port: the TCP port number, used for the socket's name too (default: a free one).
    """

    def __init__(self, *, durable: bool = False, port: int | None = None) -> None:
        b = bin_dir()
        if b is None:
            raise FileNotFoundError(missing())
        self.bin = b
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="citypg-", dir="/tmp"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.durable = durable
        self._as_service = os.geteuid() == 0
        if self._as_service:
            shutil.chown(self.root, SERVICE_USER, SERVICE_USER)
        os.chmod(self.root, 0o755)
        self._template_ready = False

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self._as_service:
            cmd = ["runuser", "-u", SERVICE_USER, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)

    def start(self) -> PostgresCluster:
        if not self.data.exists():
            self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                SERVICE_USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            )
            conf = [
                f"port = {self.port}",
                "listen_addresses = ''",
                f"unix_socket_directories = '{self.root}'",
                "max_connections = 100",
                "shared_buffers = 128MB",
            ]
            if not self.durable:
                conf += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
            with (self.data / "postgresql.conf").open("a") as f:
                f.write("\n".join(conf) + "\n")
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def dsn(self, db: str = "postgres") -> str:
        return f"host={self.root} port={self.port} user={SERVICE_USER} dbname={db}"

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://{SERVICE_USER}@/{db}?host={self.root}&port={self.port}"

    def create_database(self, name: str) -> str:
        """A new database with PostGIS (copied from a template made once); its URL."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            if not self._template_ready:
                conn.execute("CREATE DATABASE city_template")
                with psycopg.connect(self.dsn("city_template"), autocommit=True) as t:
                    t.execute("CREATE EXTENSION postgis")
                self._template_ready = True
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE city_template')
        return self.url(name)

    def wait_ready(self, timeout: float = 30) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        try:
            self.stop("immediate")
        except (subprocess.SubprocessError, OSError):
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

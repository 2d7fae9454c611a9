"""Versioned schema changes, applied by the service itself at start.

Each back end has a folder of SQL files named ``NNNN_what.sql``; a file, once released,
is never edited: a change is a new file with the next number. ``pending()`` lists what a
database has not applied yet (``schema_migrations`` records what it has); the store
applies them in order, in one transaction, under a lock, so several services starting at
once apply each file exactly once.
"""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


class Migration:
    __slots__ = ("version", "name", "sql")

    def __init__(self, version: int, name: str, sql: str) -> None:
        self.version = version
        self.name = name
        self.sql = sql

    def __repr__(self) -> str:
        return f"Migration({self.version}, {self.name!r})"


def available(dialect: str) -> list[Migration]:
    """Every migration shipped for ``dialect`` ("postgres" or "sqlite"), in order."""
    out = []
    for f in resources.files(__name__).joinpath(dialect).iterdir():
        m = _NAME.fullmatch(f.name)
        if m:
            out.append(Migration(int(m.group(1)), f.name, f.read_text()))
    out.sort(key=lambda m: m.version)
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two {dialect} migrations share a number: {versions}")
    return out


def pending(dialect: str, applied: set[int]) -> list[Migration]:
    return [m for m in available(dialect) if m.version not in applied]


def statements(sql: str) -> list[str]:
    """A script split into statements (for SQLite, whose driver runs one at a time
    inside our own transaction). Comments and blank lines are dropped."""
    import sqlite3

    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        if line.lstrip().startswith("--") and not buf.strip():
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out

"""The differential-privacy budget ledger (see ``edge.dp``): SQLite, synchronous=FULL, so
a power cut cannot make the pole forget what it already released."""

from __future__ import annotations

import sqlite3
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS releases (
    day TEXT NOT NULL, bin INTEGER NOT NULL, series TEXT NOT NULL, epsilon REAL NOT NULL,
    PRIMARY KEY (bin, series)
)
"""


class BudgetLedger:
    def __init__(self, path: Path, daily_epsilon: float) -> None:
        self.daily = daily_epsilon
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(_SCHEMA)

    def spent(self, day: str) -> float:
        row = self.db.execute(
            "SELECT COALESCE(SUM(epsilon), 0) FROM releases WHERE day=?", (day,)
        ).fetchone()
        return row[0]

    def remaining(self, day: str) -> float:
        return max(0.0, self.daily - self.spent(day))

    def spend(self, day: str, bin_id: int, series: str, epsilon: float) -> bool:
        """Record a release; False (nothing recorded) if over budget or already released."""
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                if self.spent(day) + epsilon > self.daily + 1e-12:
                    return False
                self.db.execute(
                    "INSERT INTO releases VALUES (?, ?, ?, ?)", (day, bin_id, series, epsilon)
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def close(self) -> None:
        self.db.close()

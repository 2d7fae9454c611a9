"""Counting on the pole: count series, unique devices, differential privacy, and the bins.

Everything that turns detections into published counts is wired here, so the daemon
only asks for a closed bin's pack: which series exist (from the descriptors, the same
list the manifest and the audit use), the privacy gate's bins (edge/gate.py), the
optional unique-device counters (edge/unique.py, RAM only), and the optional integer
noise with its day budget (edge/dp.py, edge/ledger.py). In DP mode the budget must
cover every bin of the day: with ``epsilon = "auto"`` the per-bin epsilon is derived
from the day's budget, and an explicit one that would run out before the day ends is
refused when the pole starts.
"""

from __future__ import annotations

import time
from pathlib import Path

from edge.config import PrivacyConfig
from edge.descriptors import SensorDescriptor
from edge.dp import discrete_laplace, epsilon_ratio
from edge.gate import CountBins, encode_bin
from edge.health import Health
from edge.ledger import BudgetLedger
from edge.manifest import count_series, personal_source
from edge.unique import UniqueCounter

UNIQUE = "unique_devices"


class Counting:
    """The count bins of one pole and everything feeding them."""

    def __init__(
        self,
        pole_id: str,
        sensors: list[tuple[str, SensorDescriptor]],
        privacy: PrivacyConfig,
        state_dir: Path,
        health: Health,
    ) -> None:
        self.pole_id = pole_id
        self.privacy = privacy
        self.health = health
        self.unique: dict[str, UniqueCounter] = {}
        for name, desc in sensors:
            if personal_source(desc) is not None and privacy.unique_devices:
                self.unique[name] = UniqueCounter()
        series = [(name, field) for name, field, _src in count_series(sensors, privacy)]
        self.ledger: BudgetLedger | None = None
        self.epsilon: float | None = None
        noise = None
        if privacy.mode == "dp":
            self.epsilon = privacy.epsilon_for(len(series))  # refuses a day it cannot cover
            self.ledger = BudgetLedger(state_dir / "privacy_ledger.sqlite", privacy.daily_epsilon)
            noise = self._dp_noise
        self.bins = CountBins(
            series, privacy.bin_s, privacy.min_bin_s, privacy.k, privacy.round_to, noise
        )

    @property
    def active(self) -> bool:
        return bool(self.bins.series)

    def unique_for(self, sensor: str, personal_field: str | None) -> tuple | None:
        """(personal field, its RAM-only counter) for a sensor that counts unique devices."""
        counter = self.unique.get(sensor)
        return (personal_field, counter) if counter is not None and personal_field else None

    def add(self, key: tuple, n: int, now: float) -> None:
        self.bins.add(key, n, now)

    def remaining_today(self, now: float) -> float | None:
        if self.ledger is None:
            return None
        return self.ledger.remaining(time.strftime("%Y-%m-%d", time.gmtime(now)))

    def _dp_noise(self, key: tuple, start: int, true: int) -> int:
        """Noise for one series of one bin, if the day's budget allows; else suppressed."""
        day = time.strftime("%Y-%m-%d", time.gmtime(start))
        if not self.ledger.spend(day, start, "/".join(key), self.epsilon):
            self.health.count("dp_budget_refusals")
            return 0  # published as suppressed: nothing about this bin leaves
        s, t = epsilon_ratio(self.epsilon)
        return max(0, true + discrete_laplace(s, t))

    def close(self, now: float) -> bytes:
        """Close the bin: unique-device sets are counted and destroyed, counts protected,
        and one pack with every count series (detections or not) comes out."""
        for name, counter in self.unique.items():
            self.bins.add((name, UNIQUE), counter.close(), now)
        end, covered, values = self.bins.close(now)
        return encode_bin(self.pole_id, end, covered, values)

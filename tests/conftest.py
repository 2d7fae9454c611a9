"""Shared fixtures: a real Mosquitto per test session, fresh pole state directories."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from host_sim.broker import Mosquitto

settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200
)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A real Mosquitto on a free loopback port for the whole session."""
    broker = Mosquitto(workdir=tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.close()


@pytest.fixture
def fresh_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of the test's own, for tests that stop and restart it."""
    broker = Mosquitto(workdir=tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.close()

"""A pytest plugin for other people's CI: simulated light poles inside your test suite.

Installed with this package (entry point ``pytest11: lightpole``). Fixtures:

- ``lightpole_broker`` — the broker URL: ``--lightpole-broker mqtt://HOST:PORT`` if given,
  else a Mosquitto started for the session on a free loopback port.
- ``lightpole_fleet`` — a factory: ``fleet = lightpole_fleet(n=3, window_s=2)`` starts n
  simulated poles (the real edge pipeline, each with its own key and MQTT connection)
  in a background thread and returns a ``RunningFleet`` with ``.broker_url``,
  ``.trust_json`` (the exported trust list for your verifier), ``.poles`` (for
  scenario knobs such as ``poles[0].world.tilt_deg = 12``) and ``.stop()``. Everything
  is stopped and removed at the end of the test.

Example::

    def test_platform_ingests_poles(lightpole_fleet):
        fleet = lightpole_fleet(n=3, window_s=2)
        my_platform.connect(fleet.broker_url, trust=fleet.trust_json)
        assert my_platform.wait_for_readings(poles=3, timeout=20)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from host_sim.broker import Mosquitto
from host_sim.fleet import Fleet


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--lightpole-broker",
        default=None,
        help="mqtt://HOST:PORT for simulated poles (default: start Mosquitto)",
    )


class RunningFleet:
    def __init__(self, fleet: Fleet, broker_url: str, work: Path) -> None:
        self.fleet = fleet
        self.poles = fleet.poles
        self.broker_url = broker_url
        self.trust_json = work / "trust.json"
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lightpole-fleet", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            self._ready.set()
            await self.fleet.run(self._stop)

        self._loop.run_until_complete(main())

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)


@pytest.fixture(scope="session")
def lightpole_broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    url = request.config.getoption("--lightpole-broker")
    if url:
        yield url
        return
    broker = Mosquitto(workdir=tmp_path_factory.mktemp("lightpole-broker")).start()
    try:
        yield broker.url
    finally:
        broker.close()


@pytest.fixture
def lightpole_fleet(lightpole_broker: str, tmp_path: Path) -> Iterator[Callable[..., RunningFleet]]:
    started: list[RunningFleet] = []

    def start(
        n: int = 3, window_s: int = 2, sensors: str = "basic", prefix: str = "poles", seed: int = 1
    ) -> RunningFleet:
        work = tmp_path / f"fleet{len(started)}"
        work.mkdir()
        fleet = Fleet(
            n, work, lightpole_broker, window_s=window_s, seed=seed, sensors=sensors, prefix=prefix
        )
        running = RunningFleet(fleet, lightpole_broker, work)
        started.append(running)
        return running

    yield start
    for f in started:
        f.stop()

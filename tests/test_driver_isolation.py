"""A driver that hangs or raises is isolated: timed out, restarted with backoff, reported
in health, and the other sensors keep delivering."""

from __future__ import annotations

import asyncio
import threading

from edge.descriptors import load_sensor
from edge.errors import NoDevice
from edge.health import Health
from edge.sensors import SensorRunner
from edge.window import Window


class Hanging:
    """Reads fine twice, then blocks forever (a wedged bus), until released."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release
        self.reads = 0

    def start(self) -> None:
        pass

    def read(self) -> dict:
        self.reads += 1
        if self.reads > 2:
            self.release.wait()
        return {"temperature": 20.0, "pressure": 100000.0, "humidity": 50.0}


class Steady:
    def start(self) -> None:
        pass

    def read(self) -> dict:
        return {"pm2_5": 5.0, "pm10": 8.0}


class Raising:
    def start(self) -> None:
        raise NoDevice("unplugged")

    def read(self) -> dict:  # pragma: no cover - never started
        return {}


def test_hung_driver_is_timed_out_and_the_rest_keeps_going():
    release = threading.Event()
    health = Health()
    window = Window(0, 3600)
    hanging = SensorRunner(
        "bme280",
        load_sensor("bme280"),
        lambda: Hanging(release),
        health,
        lambda: window,
        timeout_s=0.3,
    )
    steady = SensorRunner(
        "sds011", load_sensor("sds011"), Steady, health, lambda: window, timeout_s=0.3
    )
    raising = SensorRunner(
        "sht31", load_sensor("sht31"), Raising, health, lambda: window, timeout_s=0.3
    )

    async def go() -> None:
        tasks = [asyncio.create_task(r.run()) for r in (hanging, steady, raising)]
        await asyncio.sleep(3.0)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(go())
    release.set()
    assert health.counters.get("bme280.timeouts", 0) >= 1
    assert "bme280_missing" in health.alarms and health.sensors["bme280"] is False
    assert "sht31_missing" in health.alarms and health.counters["sht31.restarts"] >= 2
    # The healthy sensor kept its pace (poll_s 0.5 s) despite the hung and the raising one.
    assert window.series[("sds011", "pm2_5")].count >= 5
    assert window.series[("bme280", "temperature")].count == 2


class Falls:
    """A serial sensor whose frames stop (a loose cable): reads return nothing, no error."""

    def __init__(self) -> None:
        self.talking = True

    def start(self) -> None:
        pass

    def read(self) -> dict | None:
        return {"pm2_5": 5.0, "pm10": 8.0} if self.talking else None


def test_a_silent_serial_sensor_is_reported_missing_and_back():
    health = Health()
    window = Window(0, 3600)
    desc = load_sensor("sds011")
    assert desc.silent_after_s == 10.0  # 10 polls of 1 s
    desc.silent_after_s = 0.2
    driver = Falls()
    runner = SensorRunner("sds011", desc, lambda: driver, health, lambda: window)
    runner.poll_once()
    assert health.sensors["sds011"] is True
    driver.talking = False
    runner.poll_once()
    assert "sds011_missing" not in health.alarms  # one quiet poll is not silence
    import time

    time.sleep(0.3)
    runner.poll_once()
    assert health.sensors["sds011"] is False
    assert health.alarms["sds011_missing"].startswith("no data for")
    driver.talking = True
    runner.poll_once()
    assert health.sensors["sds011"] is True and "sds011_missing" not in health.alarms
    assert load_sensor("probe_sniffer").silent_after_s == 0  # quiet streets are normal
    assert load_sensor("bme280").silent_after_s == 0  # I2C sensors NACK instead

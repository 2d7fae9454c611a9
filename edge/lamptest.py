"""The lamp test by day: switch the lamp on for a few seconds and see that it burns.

By day a lamp is off by its schedule, so "no current" matches the command and a dead
lamp looks healthy until dusk: a technician commissioning at noon could not prove it.
So at start, and once a day after that, while the lamp is commanded off, the pole
switches it on through the luminaire's DALI bridge (``D4i.set_level``), lets the lamp
watch (edge/watch.py) judge the current against the command "on", and hands the lamp
back to its normal control. A lamp that does not burn raises ``lamp_test_failed``
(kept until a later test passes); each test counts ``lamp_test.pass``,
``lamp_test.fail`` or ``lamp_test.not_switched`` in health, which commissioning reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from edge.health import Health
from edge.sensors import SensorRunner
from edge.watch import LampWatch

log = logging.getLogger(__name__)

FULL = 254  # DALI arc power
ALARM = "lamp_test_failed"


class LampTest:
    """One pole's lamp test by day.

    Args:
        health: where the result is counted and the alarm raised.
        watch: the lamp watch, whose command the test overrides while it runs.
        bridge: the sensor runner of the luminaire's DALI bridge (a D4i driver).
        test_s: the longest the lamp stays on; the test ends as soon as the watch decides.
        every_s: how often to test again (by day only).
        retry_s: how soon to try again when the bridge did not take the command.
    """

    def __init__(
        self,
        health: Health,
        watch: LampWatch,
        bridge: SensorRunner,
        *,
        test_s: float = 30.0,
        every_s: float = 86400.0,
        first_after_s: float = 5.0,
        retry_s: float = 60.0,
    ) -> None:
        self.health = health
        self.watch = watch
        self.bridge = bridge
        self.test_s = test_s
        self.every_s = every_s
        self.first_after_s = first_after_s
        self.retry_s = retry_s

    async def run(self) -> None:
        await asyncio.sleep(self.first_after_s)  # first readings of current and gear
        while True:
            tested = True
            if not self.watch.commanded():  # at night the watch proves the lamp anyway
                tested = await self.test() is not None
            # A bridge that did not take the command is retried soon, not tomorrow.
            await asyncio.sleep(self.every_s if tested else self.retry_s)

    async def test(self) -> bool | None:
        """Switch on, watch, switch back: True when the lamp burned, False when it did
        not, None when it could not be switched (no gear, no bridge): that says nothing
        about the lamp, so it raises no lamp alarm (the bridge's own alarm says it)."""
        watch = self.watch
        watch.override = True
        state = None
        try:
            watch.state = "settling"  # judge afresh: the command just changed
            await self.bridge.call(lambda gear: gear.set_level(FULL))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.test_s
            while watch.state == "settling" and loop.time() < deadline:
                await asyncio.sleep(0.25)
            state = watch.state
        except Exception as exc:  # never stop the pole
            log.warning("lamp test by day: could not switch the lamp: %s", type(exc).__name__)
        finally:
            watch.override = None
            with contextlib.suppress(Exception):
                await self.bridge.call(lambda gear: gear.set_level(None))
        if state is None:
            self.health.count("lamp_test.not_switched")
            return None
        ok = state == "burning"  # "settling" at the deadline: it flickers, or never came on
        self.health.count("lamp_test.pass" if ok else "lamp_test.fail")
        if ok:
            if self.health.clear_alarm(ALARM):
                log.info("lamp test by day: the lamp burns again")
        else:
            if state == "settling":
                state = f"no steady current within {self.test_s:g} s"
            self.health.raise_alarm(ALARM, f"switched on by day: {state}")
            log.warning("lamp test by day: the lamp did not burn (%s)", state)
        return ok

"""Lamp state from the measured supply current against the commanded state: a heuristic.

Why: a failed lamp (dark street) and a day-burner (wasted energy) are what a city wants to
know first, and a shunt monitor (INA219/INA226) plus the known switching command is enough.

The heuristic, with I the measured current and I_nom the lamp's nominal current:

====================  ==================================  ==============
commanded             current                             state
====================  ==================================  ==============
on                    I >= on_threshold x I_nom (0.8)     ``burning``
on                    I <  fail_threshold x I_nom (0.1)   ``failed``
on                    in between                          ``degraded``
off                   I >= fail_threshold x I_nom         ``day_burner``
off                   I <  fail_threshold x I_nom         ``off``
====================  ==================================  ==============

- ``settling``: for ``settle_s`` (2 s) after the command changes (and after the first
  update) the current is ignored: LED drivers soft-start and discharge slowly.
- Debounce: a state is reported only after the classification has stayed the same for
  ``debounce_s``; until then the previously reported state stays (``settling`` right
  after a switch). A flicker or a single bad sample therefore never raises an alarm.
- Dimming is not modelled: a dimmed lamp reads ``degraded``. Use the dimmed nominal
  current as ``nominal_current`` if the lamp is dimmed on purpose.
- If ``now`` goes backwards (clock set), the monitor starts settling again.

Portable: runs unchanged on MicroPython.
"""

STATES = ("off", "burning", "degraded", "failed", "day_burner", "settling")


class LampMonitor:
    def __init__(
        self, nominal_current, on_threshold=0.8, fail_threshold=0.1, debounce_s=5.0, settle_s=2.0
    ):
        if nominal_current <= 0:
            raise ValueError("nominal_current must be positive")
        if not 0 < fail_threshold < on_threshold:
            raise ValueError("need 0 < fail_threshold < on_threshold")
        if debounce_s < 0 or settle_s < 0:
            raise ValueError("times must not be negative")
        self.on_current = on_threshold * nominal_current
        self.fail_current = fail_threshold * nominal_current
        self.debounce_s = debounce_s
        self.settle_s = settle_s
        self._commanded = None
        self._switched_at = None
        self._last_now = None
        self._candidate = None
        self._since = None
        self.state = "settling"

    def classify(self, commanded_on, current):
        """The instantaneous state, without settling or debounce."""
        if commanded_on:
            if current >= self.on_current:
                return "burning"
            if current < self.fail_current:
                return "failed"
            return "degraded"
        return "day_burner" if current >= self.fail_current else "off"

    def update(self, commanded_on, current, now):
        """Feed one sample; returns the reported state (one of ``STATES``)."""
        commanded_on = bool(commanded_on)
        back_in_time = self._last_now is not None and now < self._last_now
        self._last_now = now
        if commanded_on != self._commanded or back_in_time:
            self._commanded = commanded_on
            self._switched_at = now
            self._candidate = None
            self.state = "settling"
        if now - self._switched_at < self.settle_s:
            return self.state
        cand = self.classify(commanded_on, current)
        if cand != self._candidate:
            self._candidate = cand
            self._since = now
        if now - self._since >= self.debounce_s:
            self.state = cand
        return self.state

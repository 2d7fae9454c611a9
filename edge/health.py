"""Health of the pole: counters, sensor states and alarms, published on the health topic.

A sick sensor never stops the pole; it shows up here instead. Counters only go up
(since boot); alarms are raised and cleared by name. Portable to MicroPython.
"""


class Health:
    def __init__(self):
        self.counters = {}
        self.sensors = {}
        self.alarms = {}
        self.listener = None  # called with the name of each newly raised alarm

    def count(self, name, n=1):
        self.counters[name] = self.counters.get(name, 0) + n

    def sensor_state(self, sensor, up):
        self.sensors[sensor] = up

    def raise_alarm(self, name, detail=""):
        """Returns True when the alarm is new (so callers log it once, not every time)."""
        new = name not in self.alarms
        self.alarms[name] = detail
        if new and self.listener is not None:
            self.listener(name)
        return new

    def clear_alarm(self, name):
        return self.alarms.pop(name, None) is not None

    def items(self):
        """(name, value) of every health record, in a stable order (edge/messages.py
        declares them: sensor/<sensor>/up, counter/<counter>, alarm/<alarm>[/detail])."""
        out = []
        for sensor in sorted(self.sensors):
            out.append(("sensor/" + sensor + "/up", bool(self.sensors[sensor])))
        for name in sorted(self.counters):
            out.append(("counter/" + name, int(self.counters[name])))
        for name in sorted(self.alarms):
            out.append(("alarm/" + name, True))
            if self.alarms[name]:
                out.append(("alarm/" + name + "/detail", str(self.alarms[name])[:200]))
        return out

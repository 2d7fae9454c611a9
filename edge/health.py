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

    def records(self):
        """SenML records (lists of label/value pairs) for a health pack."""
        out = []
        for sensor in sorted(self.sensors):
            out.append([(0, "sensor/" + sensor + "/up"), (4, bool(self.sensors[sensor]))])
        for name in sorted(self.counters):
            out.append([(0, "counter/" + name), (1, "count"), (2, self.counters[name])])
        for name in sorted(self.alarms):
            out.append([(0, "alarm/" + name), (4, True)])
            if self.alarms[name]:
                out.append([(0, "alarm/" + name + "/detail"), (3, str(self.alarms[name])[:200])])
        return out

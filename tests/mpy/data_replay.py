"""Every built-in driver under MicroPython replays what it did under CPython against its
byte-exact simulator (/data/replay_<model>.json, written by tests/test_micropython.py):
the same bus calls with the same arguments, given the same answers, must give the same
readings and the same errors. New drivers with a descriptor and simulator are included
automatically. Floats agree to 1e-9 (libm may differ in the last bit)."""

import json
import os

import mpyshim  # noqa: F401
from edge import errors


def norm(v):
    """The JSON form the CPython side recorded: bytes as {"b": hex}, dicts sorted."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"b": bytes(v).hex() if len(v) else ""}  # MicroPython: b"".hex() is b""
    if isinstance(v, (list, tuple)):
        return [norm(x) for x in v]
    if isinstance(v, dict):
        return {"d": [[k, norm(v[k])] for k in sorted(v)]}
    return v


def same(a, b):
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b or a == b and type(a) is type(b)
    if isinstance(a, float) or isinstance(b, float):
        return type(a) is type(b) and abs(a - b) <= 1e-9 * max(1.0, abs(a))
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(same(a[i], b[i]) for i in range(len(a)))
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and sorted(a) == sorted(b) and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


class Replay:
    """A bus (and clock) that answers from a recorded list of calls, checking each one."""

    def __init__(self):
        self.events = []
        self.i = 0

    def _call(self, name, args, kwargs):
        if self.i >= len(self.events):
            raise AssertionError("extra call %s%r" % (name, norm(args)))
        ev = self.events[self.i]
        self.i += 1
        got = [name, norm(args), norm(kwargs) if kwargs else None]
        if not same([ev["m"], ev["a"], ev.get("k")], got):
            raise AssertionError("call %d: recorded %r, now %r" % (self.i, ev, got))
        for idx, hexdata in ev.get("out", []):
            buf = args[idx]
            data = bytes.fromhex(hexdata)
            for j in range(len(data)):
                buf[j] = data[j]
        if "exc" in ev:
            cls = {"OSError": OSError, "ValueError": ValueError}.get(ev["exc"], RuntimeError)
            raise cls(*ev["args"])
        r = ev.get("r")
        if isinstance(r, dict) and "b" in r:
            return bytes.fromhex(r["b"])
        return r

    def __getattr__(self, name):
        def method(*args, **kwargs):
            return self._call(name, args, kwargs)

        return method


def _driver_class(spec):
    module, name = spec.split(":")
    return getattr(__import__(module, None, None, [name]), name)


def _replay(tr):
    cls = _driver_class(tr["driver"])
    bus = Replay()
    opts = {}
    if "clock" in tr["opts"]:
        opts["clock"] = lambda: bus._call("clock", (), None)
    if "sleep_ms" in tr["opts"]:
        opts["sleep_ms"] = lambda ms: bus._call("sleep_ms", (ms,), None)
    drv = None
    for n, step in enumerate(tr["steps"]):
        bus.events, bus.i = step["io"], 0
        out = err = None
        try:
            if step["call"] == "new":
                if tr["bus"] == "i2c":
                    drv = cls(bus, address=tr["address"], **opts)
                else:
                    drv = cls(bus, **opts)
            elif step["call"] == "start":
                drv.start()
            else:
                out = norm(drv.read())
        except errors.SensorError as exc:
            err = type(exc).__name__
        ctx = "%s step %d (%s)" % (tr["model"], n, step["call"])
        assert bus.i == len(bus.events), "%s: %d of %d bus calls made" % (
            ctx,
            bus.i,
            len(bus.events),
        )
        assert err == step.get("err"), "%s: raised %r, CPython %r" % (ctx, err, step.get("err"))
        assert same(step.get("out"), out), "%s: read %r, CPython %r" % (ctx, out, step.get("out"))
    return len(tr["steps"])


def cases():
    names = sorted(f for f in os.listdir("/data") if f.startswith("replay_"))
    assert names, "no driver transcripts in /data"
    out = []
    for f in names:
        with open("/data/" + f) as fh:
            tr = json.load(fh)
        out.append((tr["model"], lambda tr=tr: _replay(tr)))
    return out

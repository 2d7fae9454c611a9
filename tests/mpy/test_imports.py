"""Every portable module (tools/mpy/portable.txt, by glob) imports under MicroPython, and
every module in edge/drivers defines a driver class with a MODEL. New files are included
without editing this test."""

import mpyshim  # noqa: F401
import _portable


def test_every_portable_module_imports():
    failed = []
    for name in _portable.MODULES:
        try:
            __import__(name)
        except Exception as exc:  # noqa: BLE001
            failed.append("%s: %r" % (name, exc))
    assert not failed, failed
    assert len(_portable.MODULES) >= 20


def test_every_driver_module_has_a_driver_class():
    drivers = [m for m in _portable.MODULES if m.startswith("edge.drivers.")]
    assert len(drivers) >= 10
    for name in drivers:
        mod = __import__(name, None, None, ["x"])
        models = [
            getattr(mod, a).MODEL
            for a in dir(mod)
            if isinstance(getattr(mod, a), type) and hasattr(getattr(mod, a), "MODEL")
        ]
        assert models and all(isinstance(m, str) for m in models), name

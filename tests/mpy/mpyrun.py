"""A minimal test runner for MicroPython: every test_* function of the given modules.

Prints ``ok   module.test`` or ``FAIL module.test: exc`` (and the traceback) per test;
tools/mpy/runner.mjs counts those lines and prints the closing ``mpy: N passed, M failed``.
A test module may also define ``cases()`` returning (name, callable) pairs, one test each
(for tests generated from data, such as one per driver transcript).
"""

import sys


def _run(label, fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none stops the run
        print("FAIL %s: %r" % (label, exc))
        sys.print_exception(exc)
        return False
    print("ok   %s" % label)
    return True


def main(modules):
    failed = 0
    for name in modules:
        try:
            mod = __import__(name)
        except Exception as exc:  # noqa: BLE001 - a module that fails to import is a failure
            print("FAIL %s (import): %r" % (name, exc))
            sys.print_exception(exc)
            failed += 1
            continue
        for attr in sorted(dir(mod)):
            if attr.startswith("test_"):
                failed += not _run("%s.%s" % (name, attr), getattr(mod, attr))
        if hasattr(mod, "cases"):
            try:
                generated = mod.cases()
            except Exception as exc:  # noqa: BLE001
                print("FAIL %s.cases: %r" % (name, exc))
                sys.print_exception(exc)
                failed += 1
                continue
            for label, fn in generated:
                failed += not _run("%s.%s" % (name, label), fn)
    return failed

"""A minimal test runner for MicroPython: every test_* function of the given modules."""

import sys


def main(modules):
    passed = failed = 0
    for name in modules:
        try:
            mod = __import__(name)
        except Exception as exc:  # an import that fails is a failing test module
            failed += 1
            print("FAIL %s (import): %r" % (name, exc))
            continue
        for attr in sorted(dir(mod)):
            if not attr.startswith("test_"):
                continue
            try:
                getattr(mod, attr)()
            except Exception as exc:
                failed += 1
                print("FAIL %s.%s: %r" % (name, attr, exc))
                sys.print_exception(exc)
            else:
                passed += 1
                print("ok   %s.%s" % (name, attr))
    print("mpy: %d passed, %d failed" % (passed, failed))
    return failed

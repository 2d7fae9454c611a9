"""The I2C device helper under MicroPython: bus errors as NoDevice with their number, the
number read from an OSError as MicroPython raises it, and const() register numbers that
the compiler folds away (they take no RAM on a board)."""

import mpyshim  # noqa: F401

import machine
from edge.bus.i2c import I2CDevice
from edge.errors import NoDevice


def _no_device(fn):
    try:
        fn()
    except NoDevice as exc:
        return exc
    raise AssertionError("expected NoDevice")


def test_missing_device_is_no_device_with_its_errno():
    d = I2CDevice(machine.I2C({}), 0x40, "INA219")
    for call in (
        lambda: d.u16(0x00),
        lambda: d.s16(0x01),
        lambda: d.u8(0x0F),
        lambda: d.writeto_mem(0x05, b"\x10\x00"),
        lambda: d.writeto(b"\x24\x00"),
        lambda: d.readfrom(3),
        lambda: d.readfrom_into(bytearray(6)),
        lambda: d.readfrom_mem_into(0xF7, bytearray(8)),
    ):
        exc = _no_device(call)
        assert exc.errno == 19, exc.errno
        assert exc.counter == "no_device"
        assert str(exc) == "INA219 at 0x40 does not answer (bus error 19)", str(exc)


def test_errno_only_oserror():
    class Bus:
        def readfrom_mem(self, addr, reg, n, addrsize=8):
            raise OSError(110)

    exc = _no_device(lambda: I2CDevice(Bus(), 0x18, "LIS3DH").u8(0x0F))
    assert exc.errno == 110 and str(exc).endswith("(bus error 110)")


def test_register_words():
    chip = machine.Words({0x01: 0xFFFE, 0x02: 0x5DC2})
    d = I2CDevice(machine.I2C({0x40: chip}), 0x40, "INA219")
    assert d.s16(0x01) == -2 and d.u16(0x01) == 0xFFFE and d.u16(0x02) == 0x5DC2


def test_register_numbers_are_folded_by_the_compiler():
    import edge.drivers.bme280 as bme280
    import edge.drivers.ina219 as ina219

    assert not hasattr(bme280, "_CHIP_ID") and not hasattr(ina219, "_REG_CAL")
    assert hasattr(ina219, "_RESET")  # bytes are not const(): they stay

"""Drivers under MicroPython against a machine stand-in fed with the reference vectors."""

import mpyshim  # noqa: F401

import machine
from edge.drivers.bme280 import BME280
from edge.drivers.lis3dh import LIS3DH
from edge.drivers.ld2450 import decode_frame
from edge.drivers.pms5003 import command as pms_command
from edge.drivers.sds011 import SDS011
from edge.drivers.sht31 import SHT31, crc8
from edge.errors import NoDevice

CAL_TP = bytes.fromhex("696d36643200e99802d6d00b231688fff9ff8c3cf8c67017")
CAL_H1 = 75
CAL_H = bytes.fromhex("780100112e031e")


def test_sds011_reference_frame():
    uart = machine.UART(1, 9600)
    drv = SDS011(uart)
    uart.feed(bytes.fromhex("AAC07B00C80160A145AB"))
    assert drv.read() == {"pm2_5": 12.3, "pm10": 45.6}


def test_bme280_reference_vector():
    regs = bytearray(256)
    regs[0xD0] = 0x60
    regs[0x88 : 0x88 + 24] = CAL_TP
    regs[0xA1] = CAL_H1
    regs[0xE1 : 0xE1 + 7] = CAL_H
    regs[0xF7:0xFF] = bytes.fromhex("4FC9B08132 00764A".replace(" ", ""))
    drv = BME280(machine.I2C({0x76: regs}))
    drv.start()
    v = drv.read()
    assert abs(v["temperature"] - 24.79) < 0.006
    assert abs(v["pressure"] / 100 - 1006.62) < 0.006
    assert abs(v["humidity"] - 68.67) < 0.015


def test_missing_device_is_no_device():
    try:
        BME280(machine.I2C({})).start()
    except NoDevice:
        return
    raise AssertionError("expected NoDevice")


def test_sht31_crc_vector():
    assert crc8(b"\xbe\xef") == 0x92


def test_sht31_reference_vector():
    regs = bytearray(256)
    regs[0:6] = bytes.fromhex("637989733301")
    regs[0x24 : 0x24 + 3] = bytes((0x80, 0x10, crc8(b"\x80\x10")))  # status after reset
    i2c = machine.I2C({0x44: regs})
    drv = SHT31(i2c, clock=lambda: 0, sleep_ms=lambda ms: None)
    i2c.readfrom = lambda addr, n, stop=True: bytes(regs[0x24 : 0x24 + n])
    drv.start()
    i2c.readfrom = lambda addr, n, stop=True: bytes(regs[0:n])
    drv._t_trigger = -100
    v = drv.read()
    assert abs(v["temperature"] - 23.0) < 0.01 and abs(v["humidity"] - 45.0) < 0.01


def test_lis3dh_tilt_vector():
    regs = bytearray(256)
    regs[0x0F] = 0x33
    regs[0x27] = 0x08
    regs[0xA8:0xAE] = bytes.fromhex("70050000403E")
    drv = LIS3DH(machine.I2C({0x18: regs}), window=1)
    drv.start()
    v = drv.read()
    assert abs(v["tilt"] - 4.99) < 0.01


def test_ld2450_and_pms5003_vectors():
    frame = bytes.fromhex("AAFF0300") + bytes.fromhex("0E03B18610004001") + bytes(16) + b"\x55\xcc"
    assert decode_frame(frame) == [(-782, 1713, -16, 320)]
    assert pms_command(0xE2) == bytes.fromhex("424DE200000171")

"""Drivers under MicroPython against a machine stand-in fed with the reference vectors."""

import mpyshim  # noqa: F401

import machine
import struct
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


def test_ina219_reference_vector():
    # 0.1 ohm, CAL 4096: 0.5 A <-> shunt 0x1388, 12 V <-> bus 0x5DC2 (conversion ready).
    from edge.drivers.ina219 import INA219

    chip = machine.Words({0x00: 0x399F, 0x01: 0x1388, 0x02: 0x5DC2, 0x03: 3000, 0x04: 5000})
    drv = INA219(machine.I2C({0x40: chip}), shunt_ohms=0.1, max_current=3.2768)
    assert drv.cal == 4096
    drv.start()
    v = drv.read()
    assert abs(v["current"] - 0.5) < 1e-9 and abs(v["voltage"] - 12.0) < 1e-9
    assert abs(v["power"] - 6.0) < 1e-9
    assert (0x05, b"\x10\x00") in chip.writes  # CAL rewritten before the read


def test_ina226_reference_vector():
    # 2 mOhm, 1 mA/LSB: CAL 0x0A00, shunt 0x1F40, bus 0x2570, current 0x2710, power 0x12B8.
    from edge.drivers.ina226 import INA226

    chip = machine.Words(
        {
            0x01: 0x1F40,
            0x02: 0x2570,
            0x03: 0x12B8,
            0x04: 0x2710,
            0x06: 0x0008,
            0xFE: 0x5449,
            0xFF: 0x2260,
        }
    )
    drv = INA226(machine.I2C({0x40: chip}), shunt_ohms=0.002, max_current=32.768)
    assert drv.cal == 0x0A00
    drv.start()
    v = drv.read()
    assert abs(v["current"] - 10.0) < 1e-9 and abs(v["voltage"] - 11.98) < 1e-9
    assert abs(v["power"] - 119.8) < 1e-9


def test_pms5003_frame_over_uart():
    from edge.drivers.pms5003 import PMS5003

    words = [0, 1, 2, 3, 7, 12, 19, 300, 120, 40, 9, 2, 1, 0]  # frame length 28, then 13 words
    words[0] = 28
    body = b"\x42\x4d" + struct.pack(">14H", *words)
    frame = body + struct.pack(">H", sum(body))
    uart = machine.UART(1, 9600)
    drv = PMS5003(uart)
    drv.start()
    assert uart.tx == pms_command(0xE1, 0, 1)
    uart.feed(b"\x00\x42" + frame[:20])  # garbage, then half a frame: nothing yet
    assert drv.read() is None
    uart.feed(frame[20:])
    v = drv.read()
    assert (v["pm1_0"], v["pm2_5"], v["pm10"], v["n0_3"], v["n10"]) == (7, 12, 19, 300, 1)


def test_probe_sniffer_line_over_uart():
    from edge.drivers.probe_sniffer import ProbeSniffer, nmea_checksum

    body = b"WPRB,1234,02:a1:b2:c3:d4:e5,-67,6,6c6967687470"
    line = b"$" + body + b"*" + ("%02X" % nmea_checksum(body)).encode() + b"\r\n"
    uart = machine.UART(1, 115200)
    drv = ProbeSniffer(uart)
    uart.feed(line[:10])
    assert drv.read() == {"probe_count": 0}
    uart.feed(line[10:])
    v = drv.read()
    assert v["probe_count"] == 1
    assert v["probes"][0] == (bytes([2, 0xA1, 0xB2, 0xC3, 0xD4, 0xE5]), -67, 6, b"lightp")


def test_ld2450_counts_a_crossing_over_uart():
    from edge.drivers.ld2450 import LD2450

    def enc(v):  # sign-magnitude, bit 15 set = positive
        return v | 0x8000 if v >= 0 else -v

    uart = machine.UART(1, 256000)
    drv = LD2450(uart)
    for x in range(-600, 700, 100):  # one walker crossing x = 0 at 1 m/s
        slot = struct.pack("<HHHH", enc(x), enc(2000), enc(100), 320)
        uart.feed(b"\xaa\xff\x03\x00" + slot + bytes(16) + b"\x55\xcc")
    assert drv.read() == {"people": 1, "bicycles": 0}


def test_d4i_over_a_bridge_stand_in():
    from edge.drivers.d4i import D4i

    b202 = bytearray(16)
    b202[0] = 15
    b202[4], b202[5:11] = 0, (12345).to_bytes(6, "big")  # energy 12345 Wh
    b202[11], b202[12:16] = 0xFF, (423).to_bytes(4, "big")  # power 42.3 W (scale -1)
    b205 = bytearray(b"\xff" * 0x1D)
    b205[0] = 0x1C
    b205[0x0B:0x0D] = (2301).to_bytes(2, "big")  # 230.1 V
    b205[0x0E] = 97  # power factor 0.97
    b205[0x1B] = 95  # 35 degC

    class Bridge:
        def read_bank(self, bank):
            return {202: bytes(b202), 205: bytes(b205)}.get(bank, b"")

    drv = D4i(Bridge())
    drv.start()
    v = drv.read()
    assert v["activeEnergy"] == 12345 and abs(v["activePower"] - 42.3) < 1e-9
    assert v["supplyVoltage"] == 230.1 and v["powerFactor"] == 0.97
    assert v["driverTemperature"] == 35 and "lampFailure" not in v

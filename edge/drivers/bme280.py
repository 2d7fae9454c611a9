"""Bosch BME280: temperature, pressure and humidity over I2C (street climate).

Runs in normal mode (continuous measurement, 0.5 ms standby, oversampling x1, filter
off), so ``read()`` is one 8-byte burst and never waits. Compensation is the
datasheet's integer code (section 4.2.3); the simulator inverts these same functions,
so there is exactly one implementation of the maths. A chip that browned out comes
back in sleep mode with 0x80000 in its data registers: ``read()`` then reconfigures it
and raises NotReady once. Portable to MicroPython.
"""

import struct

from edge.bus.i2c import I2CDevice, const
from edge.errors import Implausible, NoDevice, NotReady

_CHIP_ID = const(0xD0)
_CHIP_ID_VALUE = const(0x60)
_CTRL_HUM = const(0xF2)
_CTRL_MEAS = const(0xF4)
_CONFIG = const(0xF5)
_DATA = const(0xF7)
_CALIB_TP = const(0x88)
_CALIB_H1 = const(0xA1)
_CALIB_H = const(0xE1)
_OSRS_X1_NORMAL = const((1 << 5) | (1 << 2) | 0b11)  # osrs_t x1, osrs_p x1, normal mode
_SKIPPED_TP = const(0x80000)
_SKIPPED_H = const(0x8000)


def parse_calibration(tp, h1, h):
    """Calibration words from the three NVM blocks (0x88..0x9F, 0xA1, 0xE1..0xE7)."""
    cal = list(struct.unpack("<HhhHhhhhhhhh", tp))
    cal.append(h1)
    h2, h3 = struct.unpack("<hB", h[0:3])
    e4 = struct.unpack("<b", h[3:4])[0]
    e6 = struct.unpack("<b", h[5:6])[0]
    h4 = (e4 << 4) | (h[4] & 0x0F)
    h5 = (e6 << 4) | (h[4] >> 4)
    h6 = struct.unpack("<b", h[6:7])[0]
    return tuple(cal + [h2, h3, h4, h5, h6])


def compensate_t(adc, cal):
    """(temperature in 0.01 °C, t_fine)."""
    t1, t2, t3 = cal[0], cal[1], cal[2]
    v1 = (((adc >> 3) - (t1 << 1)) * t2) >> 11
    v2 = (((((adc >> 4) - t1) * ((adc >> 4) - t1)) >> 12) * t3) >> 14
    t_fine = v1 + v2
    return (t_fine * 5 + 128) >> 8, t_fine


def compensate_p(adc, t_fine, cal):
    """Pressure in Pa as Q24.8 (divide by 256); 0 if the calibration would divide by zero."""
    p1, p2, p3, p4, p5, p6, p7, p8, p9 = cal[3:12]
    v1 = t_fine - 128000
    v2 = v1 * v1 * p6
    v2 = v2 + ((v1 * p5) << 17)
    v2 = v2 + (p4 << 35)
    v1 = ((v1 * v1 * p3) >> 8) + ((v1 * p2) << 12)
    v1 = (((1 << 47) + v1) * p1) >> 33
    if v1 == 0:
        return 0
    p = 1048576 - adc
    p = (((p << 31) - v2) * 3125) // v1
    v1 = (p9 * (p >> 13) * (p >> 13)) >> 25
    v2 = (p8 * p) >> 19
    return ((p + v1 + v2) >> 8) + (p7 << 4)


def compensate_h(adc, t_fine, cal):
    """Relative humidity in %RH as Q22.10 (divide by 1024)."""
    h1, h2, h3, h4, h5, h6 = cal[12:18]
    v = t_fine - 76800
    v = ((((adc << 14) - (h4 << 20) - (h5 * v)) + 16384) >> 15) * (
        ((((((v * h6) >> 10) * (((v * h3) >> 11) + 32768)) >> 10) + 2097152) * h2 + 8192) >> 14
    )
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4)
    v = 0 if v < 0 else v
    v = 419430400 if v > 419430400 else v
    return v >> 12


class BME280:
    MODEL = "bme280"

    def __init__(self, i2c, address=0x76):
        self._dev = I2CDevice(i2c, address, "BME280")
        self.cal = None
        self._buf = bytearray(8)

    def _configure(self):
        d = self._dev
        d.writeto_mem(_CTRL_HUM, b"\x01")  # humidity x1, latched by ctrl_meas
        d.writeto_mem(_CONFIG, b"\x00")  # standby 0.5 ms, filter off
        d.writeto_mem(_CTRL_MEAS, bytes((_OSRS_X1_NORMAL,)))

    def start(self):
        d = self._dev
        chip = d.u8(_CHIP_ID)
        if chip != _CHIP_ID_VALUE:
            raise NoDevice("chip id 0x%02x at 0x%02x, expected 0x60 (BME280)" % (chip, d.address))
        tp = d.readfrom_mem(_CALIB_TP, 24)
        h1 = d.u8(_CALIB_H1)
        h = d.readfrom_mem(_CALIB_H, 7)
        self.cal = parse_calibration(tp, h1, h)
        self._configure()

    def read(self):
        b = self._buf
        self._dev.readfrom_mem_into(_DATA, b)
        adc_p = (b[0] << 12) | (b[1] << 4) | (b[2] >> 4)
        adc_t = (b[3] << 12) | (b[4] << 4) | (b[5] >> 4)
        adc_h = (b[6] << 8) | b[7]
        if adc_t == _SKIPPED_TP or adc_p == _SKIPPED_TP or adc_h == _SKIPPED_H:
            self._configure()  # after a brown-out the chip sleeps until told again
            raise NotReady("BME280 has no measurement yet")
        t, t_fine = compensate_t(adc_t, self.cal)
        temperature = t / 100
        pressure = compensate_p(adc_p, t_fine, self.cal) / 256
        humidity = compensate_h(adc_h, t_fine, self.cal) / 1024
        # The operating range, widened by one count at each edge: the count nearest
        # -40 degC or 300 hPa can read a hair outside, and is an honest reading.
        if not (-40.01 <= temperature <= 85.01 and 29997 <= pressure <= 110003):
            raise Implausible("BME280 reading outside its operating range")
        return {"temperature": temperature, "pressure": pressure, "humidity": humidity}

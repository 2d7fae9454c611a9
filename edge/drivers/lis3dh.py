"""ST LIS3DH accelerometer as a pole tilt meter: how far the pole leans, and how much it sways.

Why: a leaning pole (vehicle impact, foundation failure) is a safety issue, and a pole that
sways more than it used to may have a loose base. Gravity gives the lean; wind adds an
oscillation of a few tenths of a degree at ~1 Hz, so the lean is taken from the gravity
vector AVERAGED over a window of samples (default 50, i.e. 5 s at the 0.1 s poll), and the
sway is reported separately.

- ``tilt``: degrees from vertical (z along the pole), atan2(sqrt(ax^2 + ay^2), az) of the
  window's mean vector.
- ``sway``: sqrt(2) x the RMS angle between each sample and the mean vector, in degrees, i.e.
  the amplitude of the equivalent sinusoidal sway (1 deg of sinusoidal sway reads 1.0).

read() returns None until the window has filled once and when the chip has no new sample
(STATUS ZYXDA clear). If no sample arrives for several polls the chip was probably
reset (power-on CTRL_REG1 0x07 is power-down), so we write the configuration again.

Portable: runs unchanged on MicroPython.
"""

import math
import struct

from edge.bus.i2c import I2CDevice, const
from edge.errors import Implausible, NoDevice, NotReady

_WHO_AM_I = const(0x0F)
_CTRL_REG1 = const(0x20)
_CTRL_REG4 = const(0x23)
_STATUS = const(0x27)
_OUT_X_L_INC = const(0x28 | 0x80)  # bit 7: auto-increment the register address
_CHIP_ID = const(0x33)
_REG1_100HZ_XYZ = b"\x57"
_REG4_BDU_HR_2G = b"\x88"
_ZYXDA = const(0x08)
_STALE_LIMIT = const(5)  # polls without new data before we reconfigure
_G_MIN, _G_MAX = 700.0, 1300.0  # mg: the mean vector must look like gravity
_DEG = 57.29577951308232


class LIS3DH:
    MODEL = "lis3dh"

    def __init__(self, i2c, address=0x18, window=50):
        self._dev = I2CDevice(i2c, address, "LIS3DH")
        self._window = window
        self._buf = bytearray(6)
        self._x = [0] * window
        self._y = [0] * window
        self._z = [0] * window
        self._n = 0  # samples held (<= window)
        self._i = 0  # next slot in the ring
        self._sx = self._sy = self._sz = 0
        self._stale = 0

    def start(self):
        who = self._dev.u8(_WHO_AM_I)
        if who != _CHIP_ID:
            raise NoDevice("0x%02x is not a LIS3DH (WHO_AM_I 0x%02x)" % (self._dev.address, who))
        self._configure()

    def _configure(self):
        self._dev.writeto_mem(_CTRL_REG1, _REG1_100HZ_XYZ)
        self._dev.writeto_mem(_CTRL_REG4, _REG4_BDU_HR_2G)

    def read(self):
        if not self._dev.u8(_STATUS) & _ZYXDA:
            self._stale += 1
            if self._stale < _STALE_LIMIT:
                return None
            self._stale = 0
            self._configure()
            raise NotReady("LIS3DH: no new data, configuration rewritten")
        self._dev.readfrom_mem_into(_OUT_X_L_INC, self._buf)
        self._stale = 0
        x, y, z = struct.unpack_from("<hhh", self._buf, 0)
        self._add(x >> 4, y >> 4, z >> 4)  # high resolution, +-2 g: 1 mg per digit
        if self._n < self._window:
            return None
        return self._result()

    def _add(self, x, y, z):
        i = self._i
        if self._n == self._window:
            self._sx -= self._x[i]
            self._sy -= self._y[i]
            self._sz -= self._z[i]
        else:
            self._n += 1
        self._x[i], self._y[i], self._z[i] = x, y, z
        self._sx += x
        self._sy += y
        self._sz += z
        self._i = (i + 1) % self._window

    def _result(self):
        n = self._n
        mx, my, mz = self._sx / n, self._sy / n, self._sz / n
        g = math.sqrt(mx * mx + my * my + mz * mz)
        if not _G_MIN <= g <= _G_MAX:
            raise Implausible("LIS3DH: mean acceleration %.0f mg is not gravity" % g)
        tilt = math.atan2(math.sqrt(mx * mx + my * my), mz) * _DEG
        acc = 0.0
        for k in range(n):
            x, y, z = self._x[k], self._y[k], self._z[k]
            cx, cy, cz = y * mz - z * my, z * mx - x * mz, x * my - y * mx
            a = math.atan2(math.sqrt(cx * cx + cy * cy + cz * cz), x * mx + y * my + z * mz)
            acc += a * a
        return {"tilt": tilt, "sway": math.sqrt(2.0 * acc / n) * _DEG}

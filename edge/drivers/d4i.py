"""Luminaire data from a DALI-2 / Zhaga-D4i LED driver, read through a DALI bridge.

Why: a D4i driver already meters its own input energy and power and keeps diagnostics
(operating time, starts, failures, temperature), so the pole can report lamp health with
no extra sensor. Names follow TALQ (activeEnergy, switchOnCounter, lampFailure, ...).

The bridge interface (documented in docs/d4i-bridge.md)::

    bridge.read_bank(bank: int) -> bytes

returns memory bank ``bank`` of one control gear as read over DALI (DTR1 = bank, DTR0 = 0,
then READ MEMORY LOCATION repeatedly): byte 0 is the bank's last accessible address and
the result runs from offset 0 to that address inclusive. ``b""`` means the bank is not
implemented. The bridge latches multi-byte values where the bank supports it. It raises
``OSError`` when the gear or the bridge does not answer (-> NoDevice), ``ValueError`` on
a DALI framing error (-> FrameError). It is bound to one gear, so ``address`` is unused.

Memory layout (DiiA Part 251/252/253 v1.1 as used by open implementations; big-endian,
MASK = all 0xFF "not implemented", TMASK = MASK - 1 "temporarily unavailable": both omit
the field). Bank 1 (static, read once by start(); we keep no luminaire serial number or
free-text id): GTIN 0x03..0x08, content format 0x11..0x12 (= 3), year 0x13, week 0x14,
nominal power W 0x15..0x16, mains min/max V 0x19..0x1C, light output lm 0x1D..0x1F, CRI
0x20, CCT K 0x21..0x22. Bank 202: scale 0x04 + active energy Wh 0x05..0x0A, scale 0x0B +
active power W 0x0C..0x0F (value x 10^scale, scale a signed byte -6..6). Bank 205:
operating time s 0x04..0x07, start counter 0x08..0x0A, supply voltage 0.1 V 0x0B..0x0C,
power factor 0.01 0x0E, failure 0x0F, thermal derating 0x17, temperature 0x1B (- 60 degC),
output current % 0x1C. Bank 206: start counter 0x07..0x09, on-time s 0x0E..0x11, lamp
failure 0x16. Energy only increases: a decrease (gear replaced, bad read) raises
Implausible once and becomes the new baseline.

Portable: runs unchanged on MicroPython.
"""

from edge.errors import FrameError, Implausible, NoDevice

# (field, bank, offset, bytes, scale: 1, 0.1, 0.01 or "T" = byte - 60, largest valid raw)
_FIELDS = (
    ("operatingTime", 205, 0x04, 4, 1, None),
    ("driverStartCounter", 205, 0x08, 3, 1, None),
    ("supplyVoltage", 205, 0x0B, 2, 0.1, None),
    ("powerFactor", 205, 0x0E, 1, 0.01, 100),
    ("driverFailure", 205, 0x0F, 1, 1, 1),
    ("thermalDerating", 205, 0x17, 1, 1, 1),
    ("driverTemperature", 205, 0x1B, 1, "T", None),
    ("outputCurrentPercent", 205, 0x1C, 1, 1, 100),
    ("switchOnCounter", 206, 0x07, 3, 1, None),
    ("lampOnTime", 206, 0x0E, 4, 1, None),
    ("lampFailure", 206, 0x16, 1, 1, 1),
)
_INFO = (
    ("gtin", 0x03, 6),
    ("manufactureYear", 0x13, 1),
    ("manufactureWeek", 0x14, 1),
    ("nominalPower", 0x15, 2),
    ("minDimPower", 0x17, 2),
    ("mainsVoltageMin", 0x19, 2),
    ("mainsVoltageMax", 0x1B, 2),
    ("nominalLightOutput", 0x1D, 3),
    ("cri", 0x20, 1),
    ("cct", 0x21, 2),
)


def _uint(data, off, n):
    """Big-endian unsigned value, or None for MASK/TMASK or beyond the bank's end."""
    if off + n > len(data):
        return None
    v = 0
    for i in range(n):
        v = (v << 8) | data[off + i]
    return None if v >= (1 << (8 * n)) - 2 else v


def _scaled(data, off, n):
    """Scale byte (signed power of ten) followed by an n-byte value."""
    v = _uint(data, off + 1, n)
    if v is None:
        return None
    s = data[off] - 256 if data[off] > 127 else data[off]
    if not -6 <= s <= 6:
        raise FrameError("D4i: scale factor %d" % s)
    return v * 10**s if s >= 0 else v / 10 ** (-s)


class D4i:
    MODEL = "d4i"

    def __init__(self, bridge, address=None):
        self._bridge = bridge
        self.address = address
        self.info = {}
        self._energy = None

    def _bank(self, bank):
        try:
            data = self._bridge.read_bank(bank)
        except OSError as e:
            raise NoDevice("D4i gear: %s" % e) from e
        except ValueError as e:
            raise FrameError("D4i bank %d: %s" % (bank, e)) from e
        if data and len(data) != data[0] + 1:
            raise FrameError("D4i bank %d: %d bytes, last address %d" % (bank, len(data), data[0]))
        return data

    def start(self):
        """Probe (bank 202 is mandatory for D4i) and read the static bank 1 once."""
        if not self._bank(202):
            raise NoDevice("D4i: gear has no bank 202 (not D4i)")
        b1 = self._bank(1)
        info = {}
        if _uint(b1, 0x11, 2) == 3:  # D4i content format, else bank 1 is something else
            for name, off, n in _INFO:
                v = _uint(b1, off, n)
                if v is not None:
                    info[name] = v + 2000 if name == "manufactureYear" else v
        self.info = info

    def set_level(self, level):
        """Command the lamp: DALI arc power ``level`` 0-254 (0 off, 254 full), or None to
        hand it back to its normal control (schedule, photocell, CMS). For the lamp test
        by day (edge/lamptest.py); docs/d4i-bridge.md."""
        try:
            self._bridge.set_level(level)
        except OSError as e:
            raise NoDevice("D4i gear: %s" % e) from e

    def read(self):
        b202 = self._bank(202)
        if not b202:
            raise FrameError("D4i: bank 202 missing")
        out = {}
        energy = _scaled(b202, 0x04, 6)
        power = _scaled(b202, 0x0B, 4)
        if energy is not None:
            if self._energy is not None and energy < self._energy:
                self._energy = energy
                raise Implausible("D4i: active energy went down")
            self._energy = out["activeEnergy"] = energy
        if power is not None:
            out["activePower"] = power
        banks = {205: self._bank(205), 206: self._bank(206)}
        for name, bank, off, n, scale, top in _FIELDS:
            v = _uint(banks[bank], off, n)
            if v is None:
                continue
            if top is not None and v > top:
                raise Implausible("D4i: %s raw %d" % (name, v))
            if scale == "T":
                out[name] = v - 60
            elif scale == 1:
                out[name] = v
            else:
                out[name] = round(v * scale, 2)
        return out or None

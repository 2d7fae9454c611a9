"""Wi-Fi/BLE probe sniffer over UART: lines ``$WPRB,<ms>,<mac>,<rssi>,<ch>,<ssid_hex>*XX``.

Every byte of this device is personal data (MAC addresses, SSIDs). The driver hands
probes over in RAM only, under the field ``probes`` whose descriptor class is
``personal`` — the daemon never aggregates, stores or publishes such a field — and
counts them in ``probe_count``. It never logs or formats line contents: an error says
how long the line was, not what it held. Portable to MicroPython.
"""

from edge.errors import ChecksumError, FrameError, NoDevice

_MAX_LINE = 160
_MAX_BUF = 1024


def nmea_checksum(body):
    """XOR of the characters between '$' and '*'."""
    c = 0
    for b in body:
        c ^= b
    return c


def _hexval(ch):
    if 48 <= ch <= 57:
        return ch - 48
    ch |= 0x20
    if 97 <= ch <= 102:
        return ch - 87
    return -1


def _parse_mac(text):
    parts = text.split(b":")
    if len(parts) != 6:
        return None
    out = bytearray(6)
    for i in range(6):
        p = parts[i]
        if len(p) != 2 or _hexval(p[0]) < 0 or _hexval(p[1]) < 0:
            return None
        out[i] = _hexval(p[0]) * 16 + _hexval(p[1])
    return bytes(out)


def _parse_hex(text):
    if len(text) % 2:
        return None
    out = bytearray(len(text) // 2)
    for i in range(len(out)):
        hi, lo = _hexval(text[2 * i]), _hexval(text[2 * i + 1])
        if hi < 0 or lo < 0:
            return None
        out[i] = hi * 16 + lo
    return bytes(out)


class ProbeSniffer:
    MODEL = "probe_sniffer"

    def __init__(self, uart):
        self.uart = uart
        self._buf = b""

    def start(self):
        pass

    def read(self):
        try:
            data = self.uart.read()
        except OSError as exc:
            raise NoDevice("probe sniffer serial port failed: %s" % exc) from exc
        if not data and not self._buf:
            return None
        buf = self._buf + (data or b"")
        probes = []
        bad = None
        while True:
            end = buf.find(b"\n")
            if end < 0:
                break
            line = buf[:end].rstrip(b"\r")
            buf = buf[end + 1 :]
            start = line.find(b"$")
            if start < 0:
                continue
            line = line[start:]
            star = line.find(b"*")
            if star < 0 or len(line) != star + 3 or len(line) > _MAX_LINE:
                bad = FrameError(
                    "probe line of %d bytes without a valid checksum field" % len(line)
                )
                continue
            body = line[1:star]
            want = _parse_hex(line[star + 1 :])
            if want is None or nmea_checksum(body) != want[0]:
                bad = ChecksumError("probe line of %d bytes failed its checksum" % len(line))
                continue
            f = body.split(b",")
            if len(f) != 6 or f[0] != b"WPRB":
                bad = FrameError("probe line of %d bytes has the wrong fields" % len(line))
                continue
            mac = _parse_mac(f[2])
            ssid = _parse_hex(f[5])
            try:
                rssi, channel = int(f[3]), int(f[4])
            except ValueError:
                mac = None
            if mac is None or ssid is None:
                bad = FrameError("probe line of %d bytes has a malformed field" % len(line))
                continue
            probes.append((mac, rssi, channel, ssid))
        self._buf = buf[-_MAX_BUF:] if len(buf) > _MAX_BUF else buf
        if probes:
            return {"probes": probes, "probe_count": len(probes)}
        if bad is not None:
            raise bad
        return {"probe_count": 0} if data else None

"""A deliberately broken SDS011 driver, as a careless vendor might write it: it never
checks the checksum and blocks waiting for a whole frame. Conformance must fail it."""

import struct
import time


class BrokenSDS011:
    MODEL = "sds011"

    def __init__(self, uart):
        self.uart = uart

    def start(self):
        pass

    def read(self):
        data = b""
        deadline = time.monotonic() + 0.2
        while len(data) < 10 and time.monotonic() < deadline:  # blocks the event loop
            data += self.uart.read(10 - len(data)) or b""
        i = data.find(b"\xaa\xc0")
        if i < 0 or len(data) < i + 10:
            return None
        pm25, pm10 = struct.unpack("<HH", data[i + 2 : i + 6])
        return {"pm2_5": pm25 / 10, "pm10": pm10 / 10}

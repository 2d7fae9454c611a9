"""A stand-in for MicroPython's ``machine`` module, for the WebAssembly interpreter,
which has none: I2C and UART with the real method names, backed by register maps and
byte queues that the tests fill (host_sim in miniature).

An I2C device is either a bytearray(256) of 8-bit registers (auto-increment) or an
object with ``read_mem(reg, n)`` / ``write_mem(reg, data)``, such as ``Words`` below for
chips with 16-bit big-endian registers (INA219/INA226)."""


class Words:
    """16-bit big-endian registers: {reg: value}; a read of n bytes returns reg's word."""

    def __init__(self, regs):
        self.regs = dict(regs)
        self.writes = []

    def read_mem(self, reg, n):
        v = self.regs.get(reg, 0)
        return bytes(((v >> 8) & 0xFF, v & 0xFF))[:n]

    def write_mem(self, reg, data):
        self.writes.append((reg, bytes(data)))
        if len(data) >= 2:
            self.regs[reg] = (data[0] << 8) | data[1]


class I2C:
    def __init__(self, devices=None):
        self.devices = devices or {}  # addr -> bytearray(256) register file
        self._ptr = {}

    def scan(self):
        return sorted(self.devices)

    def _dev(self, addr):
        if addr not in self.devices:
            raise OSError(19, "ENODEV")
        return self.devices[addr]

    def readfrom_mem(self, addr, reg, n, addrsize=8):
        regs = self._dev(addr)
        if hasattr(regs, "read_mem"):
            return regs.read_mem(reg, n)
        return bytes(regs[(reg + i) & 0xFF] for i in range(n))

    def readfrom_mem_into(self, addr, reg, buf, addrsize=8):
        data = self.readfrom_mem(addr, reg, len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]

    def writeto_mem(self, addr, reg, buf, addrsize=8):
        regs = self._dev(addr)
        if hasattr(regs, "write_mem"):
            regs.write_mem(reg, buf)
            return
        for i in range(len(buf)):
            regs[(reg + i) & 0xFF] = buf[i]

    def writeto(self, addr, buf, stop=True):
        self._dev(addr)
        self._ptr[addr] = buf[0] if buf else 0
        return len(buf)

    def readfrom(self, addr, n, stop=True):
        regs = self._dev(addr)
        p = self._ptr.get(addr, 0)
        return bytes(regs[(p + i) & 0xFF] for i in range(n))

    def readfrom_into(self, addr, buf, stop=True):
        data = self.readfrom(addr, len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]


class UART:
    def __init__(self, *args, **kwargs):
        self.rx = b""
        self.tx = b""

    def feed(self, data):
        self.rx += data

    def any(self):
        return len(self.rx)

    def read(self, n=-1):
        if not self.rx:
            return None
        data, self.rx = self.rx, b""
        return data

    def write(self, buf):
        self.tx += bytes(buf)
        return len(buf)

"""A Modbus/TCP device whose every value the script knows: holding register 0 is
a counter that steps by one each second (on its own clock), and every read that
the device answers is recorded with its time. "Generated while lwgate ran" then
has a precise meaning: a value lwgate read from the device (a value nobody polled
was never generated)."""

import threading
import time

from . import common  # noqa: F401 - puts tests/ on sys.path
from modbus_sim import ModbusSim  # tests/modbus_sim.py: pymodbus in a thread

UNIT = 1
ADDRESS = 0


class CounterDevice:
    def __init__(self, period=1.0, start=1):
        self.sim = ModbusSim(units=(UNIT,))
        self.period = period
        self.value = start
        # (time the value was set, value): the device's own clock.
        self.changes: list[tuple[float, int]] = []
        # (time answered, value) of every read of register 0.
        self.reads: list[tuple[float, int]] = []
        self._lock = threading.Lock()
        self._set(start)
        unit = self.sim.units[UNIT]
        answer = unit.async_getValues

        async def recording(fc, address, count=1):
            values = await answer(fc, address, count)
            if fc == 3 and address <= ADDRESS < address + count and isinstance(values, list):
                with self._lock:
                    self.reads.append((time.time(), int(values[ADDRESS - address])))
            return values

        # An instance attribute: pymodbus calls context[unit].async_getValues.
        unit.async_getValues = recording
        self._stop = threading.Event()
        self._thread = None

    @property
    def port(self):
        return self.sim.port

    def _set(self, v):
        with self._lock:
            self.sim.set_registers(UNIT, ADDRESS, [v & 0xFFFF])
            self.changes.append((time.time(), v))

    def start_counting(self):
        def run():
            nxt = time.monotonic() + self.period
            while not self._stop.wait(max(0.0, nxt - time.monotonic())):
                self.value += 1
                self._set(self.value)
                nxt += self.period

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop_counting(self):
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def snapshot(self):
        with self._lock:
            return list(self.changes), list(self.reads)

    def close(self):
        self.stop_counting()
        self.sim.stop()


def device_file(port, prefix="soak", poll_ms=200):
    """The devices.d file: the counter as the Sensor Value of a Generic Sensor."""
    return f"""[device]
id = "{prefix}"
protocol = "modbus-tcp"
[modbus]
host = "127.0.0.1"
port = {port}
unit = {UNIT}
poll_ms = {poll_ms}
timeout_ms = 500
retries = 0
reconnect_max_ms = 500
[[modbus.point]]
path = "3300/0/5700"
register = "holding-register"
address = {ADDRESS}
type = "u16"
"""

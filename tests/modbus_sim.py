"""A Modbus/TCP device on pymodbus (an independent implementation), in a thread of
its own: registers and coils the tests set and read, values encoded by pymodbus
itself, and a server that can be stopped (the device is gone) and started again
on the same port (it is back)."""

import asyncio
import socket
import threading
import time

from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server import ServerAsyncStop, StartAsyncTcpServer

SIZE = 256
FLOAT32 = ModbusClientMixin.DATATYPE.FLOAT32


def free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ModbusSim:
    def __init__(self, units=(1,), port=None):
        self.port = port or free_tcp_port()
        self.units = {
            u: ModbusSlaveContext(
                co=ModbusSequentialDataBlock(0, [False] * SIZE),
                di=ModbusSequentialDataBlock(0, [False] * SIZE),
                hr=ModbusSequentialDataBlock(0, [0] * SIZE),
                ir=ModbusSequentialDataBlock(0, [0] * SIZE),
            )
            for u in units
        }
        self.context = ModbusServerContext(slaves=self.units, single=False)
        self._loop = None
        self._thread = None
        self.start()

    def start(self):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"pymodbus server did not listen on {self.port}")

    def _run(self):
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(StartAsyncTcpServer(context=self.context, address=("127.0.0.1", self.port)))

    def stop(self):
        """The device is gone: its port closes (connection refused)."""
        if self._loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(ServerAsyncStop(), self._loop)
        fut.result(10)
        self._thread.join(10)
        self._loop = None

    # Function codes: 1 coils, 2 discrete inputs, 3 holding, 4 input registers.
    def set_registers(self, unit, address, values, fc=3):
        self.units[unit].setValues(fc, address, list(values))

    def registers(self, unit, address, count, fc=3):
        return self.units[unit].getValues(fc, address, count)

    def set_float(self, unit, address, value, fc=3):
        self.set_registers(unit, address, ModbusClientMixin.convert_to_registers(value, FLOAT32), fc)

    def set_coil(self, unit, address, value):
        self.units[unit].setValues(1, address, [bool(value)])

    def coil(self, unit, address):
        return bool(self.units[unit].getValues(1, address, 1)[0])

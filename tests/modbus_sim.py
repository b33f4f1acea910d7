"""A Modbus/TCP device on pymodbus (an independent implementation), in a thread of
its own: registers and coils the tests set and read, values encoded by pymodbus
itself, and a server that can be stopped (the device is gone) and started again
on the same port (it is back). With `rtu=TTY` the same units answer Modbus RTU on
one end of a socat pty pair (`PtyPair`), and `corrupt(n)` spoils the CRC of the
next n answers."""

import asyncio
import socket
import threading
import time

from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
import os
import subprocess
import tempfile

from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer, ServerAsyncStop, StartAsyncTcpServer

SIZE = 256
FLOAT32 = ModbusClientMixin.DATATYPE.FLOAT32


def free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Unit(ModbusSlaveContext):
    """A unit that can be told to answer with a Modbus exception code."""

    fail = None

    async def async_getValues(self, fc, address, count=1):
        # pymodbus turns an integer returned here into an exception response.
        return self.fail if self.fail else self.getValues(fc, address, count)


class PtyPair:
    """A null-modem cable: two ptys joined by socat, at stable paths."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="lwgate-pty.")
        self.device = os.path.join(self.dir, "device")  # the bus, as the gateway sees it
        self.sim = os.path.join(self.dir, "sim")  # where the simulated units listen
        self.proc = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.device}", f"pty,raw,echo=0,link={self.sim}"],
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not (os.path.exists(self.device) and os.path.exists(self.sim)):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError("socat did not make its pty pair (is socat installed?)")
            time.sleep(0.05)

    def close(self):
        self.proc.kill()
        self.proc.wait(10)


class ModbusSim:
    def __init__(self, units=(1,), port=None, rtu=None):
        self.rtu = rtu
        self._corrupt = 0
        self._server = None
        self.port = None if rtu else (port or free_tcp_port())
        self.units = {
            u: _Unit(
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
        if self.rtu:
            ready = asyncio.run_coroutine_threadsafe(asyncio.sleep(0.3), self._loop)
            ready.result(10)
            return
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
        if self.rtu:
            self._loop.run_until_complete(self._serve_rtu())
            return
        self._loop.run_until_complete(StartAsyncTcpServer(context=self.context, address=("127.0.0.1", self.port)))

    async def _serve_rtu(self):
        # pymodbus takes the running loop when the server is made.
        self._server = ModbusSerialServer(self.context, framer=FramerType.RTU, port=self.rtu, baudrate=9600,
                                          ignore_missing_slaves=True, trace_packet=self._trace)
        await self._server.serve_forever()

    def _trace(self, sending, data):
        if sending and self._corrupt > 0:
            self._corrupt -= 1
            return data[:-2] + bytes([data[-2] ^ 0xFF, data[-1]])
        return data

    def fail(self, unit, code):
        """The unit answers reads with exception `code` (None: with its values again)."""
        self.units[unit].fail = code

    def corrupt(self, n):
        """The next n RTU answers go out with a bad CRC."""
        self._corrupt = n

    def stop(self):
        """The device is gone: its port closes (connection refused)."""
        if self._loop is None:
            return
        stop = self._server.shutdown() if self._server else ServerAsyncStop()
        fut = asyncio.run_coroutine_threadsafe(stop, self._loop)
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

"""N Modbus/TCP devices on pymodbus 3.9 in one asyncio process, for scripts/bench/modbus.

Device i (0-based) listens on 127.0.0.1:(base_port + i), unit 1, with `registers`
holding registers at addresses 0.. whose values change every second (register k of
device i holds (tick * 7 + i * 10 + k) mod 65536), so every poll reads fresh data.

Every read that reaches a device's datastore (one per Modbus request, whatever its
register count) is counted. Once a second the totals are appended to `--stats` as a
JSON line: {"t": monotonic, "requests": n, "registers": n, "devices_read": n,
"per_device": [...]}, which the bench samples at the start and end of a window.
Runs until SIGTERM/SIGINT, or `--max-seconds`.
"""

import argparse
import asyncio
import json
import os
import signal
import time

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server import ModbusTcpServer


class CountingContext(ModbusSlaveContext):
    """A device's datastore that counts the reads the server makes on it."""

    def __init__(self, stats, index, **kw):
        super().__init__(**kw)
        self._stats = stats
        self._index = index

    def getValues(self, fc_as_hex, address, count=1):  # noqa: N802 - pymodbus API
        self._stats["requests"] += 1
        self._stats["registers"] += count
        self._stats["per_device"][self._index] += 1
        return super().getValues(fc_as_hex, address, count)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--base-port", type=int, default=15001)
    ap.add_argument("--registers", type=int, default=10)
    ap.add_argument("--stats", required=True)
    ap.add_argument("--ready", help="file written once every port listens")
    ap.add_argument("--max-seconds", type=float, default=600)
    args = ap.parse_args()

    stats = {"requests": 0, "registers": 0, "per_device": [0] * args.devices}
    slaves = []
    servers = []
    for i in range(args.devices):
        slave = CountingContext(
            stats,
            i,
            hr=ModbusSequentialDataBlock(0, [0] * (args.registers + 1)),
            ir=ModbusSequentialDataBlock(0, [0] * 2),
            co=ModbusSequentialDataBlock(0, [False] * 2),
            di=ModbusSequentialDataBlock(0, [False] * 2),
        )
        slaves.append(slave)
        ctx = ModbusServerContext(slaves={1: slave}, single=False)
        servers.append(ModbusTcpServer(ctx, address=("127.0.0.1", args.base_port + i)))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    tasks = [asyncio.create_task(s.serve_forever()) for s in servers]

    # Wait until every port accepts a connection.
    deadline = time.monotonic() + 30
    for i in range(args.devices):
        while True:
            try:
                _, w = await asyncio.open_connection("127.0.0.1", args.base_port + i)
                w.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"device {i} never listened on {args.base_port + i}")
                await asyncio.sleep(0.05)
    if args.ready:
        with open(args.ready, "w") as f:
            f.write(f"{os.getpid()}\n")

    start = time.monotonic()
    tick = 0
    with open(args.stats, "a", buffering=1) as out:
        while not stop.is_set() and time.monotonic() - start < args.max_seconds:
            for i, slave in enumerate(slaves):
                slave.setValues(3, 0, [(tick * 7 + i * 10 + k) % 65536 for k in range(args.registers)])
            out.write(
                json.dumps(
                    {
                        "t": time.monotonic(),
                        "requests": stats["requests"],
                        "registers": stats["registers"],
                        "devices_read": sum(1 for n in stats["per_device"] if n),
                        "per_device": stats["per_device"],
                    }
                )
                + "\n"
            )
            tick += 1
            try:
                await asyncio.wait_for(stop.wait(), 1.0 - (time.monotonic() - start) % 1.0)
            except asyncio.TimeoutError:
                pass

    for s in servers:
        await s.shutdown()
    for t in tasks:
        t.cancel()


if __name__ == "__main__":
    asyncio.run(main())

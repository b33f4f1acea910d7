"""The LwM2M server side of scripts/bench/modbus: the project's test server
(tests/lwm2m_server.py, aiocoap) waits for lwgate to register, then, for every
device, sets pmin=1 pmax=1 on one resource and observes it.

Writes its UDP port to `--port-file` as soon as it listens (lwgate's config needs
it), then a JSON line per second to `--stats`: {"t", "registered", "observing",
"notifications", "codes"}; `codes` counts the answers to the Write-Attributes and
Observe requests (e.g. {"2.04": 100, "2.05": 100}, or 4.04s while lwgate has no
Modbus bridge). Runs until SIGTERM/SIGINT or `--max-seconds`.
"""

import argparse
import json
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

from aiocoap import Code  # noqa: E402
from lwm2m_server import TestServer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", default="bench-gw")
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--path", default="3300/0/5700", help="resource observed under /dev<N>/")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--stats", required=True)
    ap.add_argument("--register-timeout", type=float, default=60)
    ap.add_argument("--max-seconds", type=float, default=600)
    args = ap.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    srv = TestServer(host="127.0.0.1")
    Path(args.port_file).write_text(f"{srv.port}\n")
    start = time.monotonic()
    codes = Counter()
    notes = []
    state = {"registered": False, "observing": 0}
    out = open(args.stats, "a", buffering=1)

    def report():
        with srv._cond:
            n = sum(1 for ns in notes for x in ns if not isinstance(x, Exception))
        out.write(json.dumps({"t": time.monotonic(), **state, "notifications": n, "codes": dict(codes)}) + "\n")

    try:
        srv.wait_registered(args.endpoint, timeout=args.register_timeout)
        state["registered"] = True
        for i in range(1, args.devices + 1):
            if stop.is_set():
                break
            path = f"/dev{i}/{args.path}"
            try:
                r = srv.request(args.endpoint, Code.PUT, path, uri_query=["pmin=1", "pmax=1"], timeout=10)
                codes[f"attr {r.code.dotted}"] += 1
                # Until a device's first poll its values answer 5.03: ask again.
                for _ in range(20):
                    first, ns, _cancel = srv.observe(args.endpoint, path)
                    if first.code != Code.SERVICE_UNAVAILABLE:
                        break
                    time.sleep(0.5)
                codes[f"observe {first.code.dotted}"] += 1
                if first.code.is_successful() and first.opt.observe is not None:
                    state["observing"] += 1
                    notes.append(ns)
            except Exception as e:  # noqa: BLE001 - counted, the bench goes on
                codes[f"error {type(e).__name__}"] += 1
        report()
        while not stop.is_set() and time.monotonic() - start < args.max_seconds:
            stop.wait(1.0)
            report()
    except AssertionError as e:
        out.write(json.dumps({"t": time.monotonic(), "error": str(e)[:300], **state}) + "\n")
    finally:
        report()
        srv.close()


if __name__ == "__main__":
    main()

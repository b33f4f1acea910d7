"""The LwM2M server side of scripts/bench/mqtt: the project's test server
(tests/lwm2m_server.py, aiocoap) waits for lwgate to register and for the N
devices found by topic to appear in /25, then observes /dev<N>/3303/0/5700 of each
(no attributes: every value is notified). For each notification: the SenML time
(the payload's "sent", lwgate's time_json) against the arrival time = the
publish-to-notification latency, on the wire and through aiocoap.

Writes its port to --port-file, then a JSON line per second to --stats:
{"t", "registered", "devices", "observing", "notifications", "lat_ms": [recent latencies]}.
"""

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

import cbor2

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

from aiocoap import Code  # noqa: E402
from lwm2m_server import SENML_CBOR, TestServer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", default="bench-gw")
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--stats", required=True)
    ap.add_argument("--max-seconds", type=float, default=600)
    a = ap.parse_args()
    srv = TestServer()
    Path(a.port_file).write_text(str(srv.port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    state = {"registered": False, "devices": 0, "observing": 0, "notifications": 0}
    lat = []
    lock = threading.Lock()

    def on_note(payload):
        now = time.time()
        try:
            recs = cbor2.loads(payload)
        except Exception:
            return
        bt = 0.0
        for r in recs:
            bt = r.get(-3, bt)
            t = bt + r.get(6, 0)
            if t > 1e9:
                with lock:
                    lat.append((now - t) * 1000)
                    state["notifications"] += 1

    def work():
        try:
            srv.wait_registered(a.endpoint, 60)
        except AssertionError:
            return
        state["registered"] = True
        seen = set()
        deadline = time.monotonic() + 120
        while len(seen) < a.devices and time.monotonic() < deadline and not stop.is_set():
            r = srv.read(a.endpoint, "/25", accept=110)
            if r.code == Code.CONTENT:
                import json as j

                for rec in j.loads(r.payload):
                    if str(rec.get("n", "")).endswith("/1") and "vs" in rec:
                        seen.add(rec["vs"])
            state["devices"] = len(seen)
            time.sleep(0.5)
        for name in sorted(seen):
            first, notes, cancel = srv.observe(a.endpoint, f"/{name}/3303/0/5700", accept=SENML_CBOR)
            if first.code == Code.CONTENT:
                state["observing"] += 1
                lists.append([notes, 0])

    lists = []

    def drain():
        # One thread looks at every observation's list every 2 ms (the arrival
        # time is taken here: up to 2 ms late).
        while not stop.is_set():
            for entry in list(lists):
                notes, i = entry
                while i < len(notes):
                    n = notes[i]
                    i += 1
                    if not isinstance(n, Exception):
                        on_note(n.payload)
                entry[1] = i
            time.sleep(0.002)

    threading.Thread(target=drain, daemon=True).start()

    threading.Thread(target=work, daemon=True).start()
    start = time.monotonic()
    with open(a.stats, "a") as st:
        while not stop.is_set() and time.monotonic() - start < a.max_seconds:
            time.sleep(1)
            with lock:
                recent, lat[:] = lat[:], []
            st.write(json.dumps({"t": time.time(), **state, "lat_ms": [round(x, 2) for x in recent]}) + "\n")
            st.flush()
    srv.close()


if __name__ == "__main__":
    main()

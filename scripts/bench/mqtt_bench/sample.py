"""Samples one process tree for scripts/bench/mqtt over a window: RSS (VmRSS summed
over the tree, once a second: mean and peak) and CPU (utime+stime over wall time,
% of one core), with the same helpers as scripts/bench/modbus; and the latencies
(publish to delivery, ms) that arrived in the window: from the observer's stats
(lwgate) or from the telemetry log of `mosquitto_sub -F '%U %p'` (ThingsBoard).
Prints one JSON object."""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "modbus_bench"))
from sample import cpu_ticks, rss_kb, tree  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def tb_latencies(path, since, until):
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            at, _, payload = line.partition(" ")
            try:
                at = float(at)
                if not since <= at <= until:
                    continue
                for recs in json.loads(payload).values():
                    for r in recs if isinstance(recs, list) else [recs]:
                        v = r.get("values", r)
                        if "sent" in v:
                            out.append((at - float(v["sent"])) * 1000)
            except (ValueError, AttributeError, TypeError):
                continue
    return out


def observer_latencies(path, since, until):
    out, notes = [], 0
    with open(path) as f:
        for line in f:
            try:
                s = json.loads(line)
            except ValueError:
                continue
            if since <= s["t"] <= until:
                out += s["lat_ms"]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--telemetry", help="mosquitto_sub -F '%%U %%p' log (ThingsBoard)")
    ap.add_argument("--observer", help="the observer's stats (lwgate)")
    a = ap.parse_args()
    start_ticks = {p: cpu_ticks(p) for p in tree(a.pid)}
    last = dict(start_ticks)
    t0, w0 = time.monotonic(), time.time()
    rss = []
    while time.monotonic() - t0 < a.seconds:
        pids = tree(a.pid)
        rss.append(sum(rss_kb(p) for p in pids))
        for p in pids:
            t = cpu_ticks(p)
            if t is not None:
                last[p] = t
                start_ticks.setdefault(p, 0)
        time.sleep(1)
    wall, w1 = time.monotonic() - t0, time.time()
    if not os.path.exists(f"/proc/{a.pid}"):
        raise SystemExit(f"process {a.pid} exited during the sample")
    ticks = sum(last[p] - (start_ticks[p] or 0) for p in last)
    time.sleep(1)  # the last second's deliveries are logged
    lat = tb_latencies(a.telemetry, w0, w1) if a.telemetry else observer_latencies(a.observer, w0 + 1, w1 + 1)
    lat.sort()
    q = lambda f: round(lat[min(len(lat) - 1, int(f * len(lat)))], 2) if lat else None  # noqa: E731
    print(json.dumps({
        "rss_mb_max": round(max(rss) / 1024, 2),
        "rss_mb_mean": round(statistics.mean(rss) / 1024, 2),
        "cpu_pct": round(100 * ticks / CLK_TCK / wall, 2),
        "delivered_s": round(len(lat) / wall, 1),
        "lat_ms_p50": q(0.5),
        "lat_ms_p99": q(0.99),
    }))


if __name__ == "__main__":
    main()

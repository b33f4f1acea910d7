"""Samples one process tree for scripts/bench/modbus: RSS and CPU from /proc, and the
Modbus request rate from the device simulator's stats file, over the same window.

RSS: the sum of VmRSS over the process and all its descendants, read once a second;
the mean and the peak are reported. CPU: utime+stime (from /proc/PID/stat) of the
tree at the end minus at the start (a process that appears during the window counts
from zero), over the wall time, as % of one core. Modbus: the difference between the
simulator's request counter at the start and at the end, over the same interval.

Prints one JSON object on stdout.
"""

import argparse
import json
import os
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def tree(root):
    seen, todo = [], [root]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo += children(p)
    return seen


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    except OSError:
        return None


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def modbus_counter(path):
    """(time, requests, registers, per_device) of the stats file's last line."""
    with open(path, "rb") as f:
        try:
            f.seek(-65536, os.SEEK_END)
        except OSError:
            f.seek(0)
        lines = f.read().splitlines()
    for line in reversed(lines):
        try:
            s = json.loads(line)
            return s["t"], s["requests"], s["registers"], s["per_device"]
        except (ValueError, KeyError):
            continue
    raise SystemExit(f"no stats in {path}")


def json_counter(spec):
    path, key = spec.rsplit(":", 1)
    with open(path, "rb") as f:
        lines = f.read().splitlines()
    for line in reversed(lines):
        try:
            return json.loads(line)[key]
        except (ValueError, KeyError):
            continue
    return 0


def count_lines(path):
    if not path:
        return 0
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--modbus-stats", required=True)
    ap.add_argument("--lines", help="a file whose line count is reported as a rate (messages)")
    ap.add_argument("--json-counter", help="FILE:KEY, the KEY of FILE's last JSON line, reported as a rate (messages)")
    args = ap.parse_args()

    if not os.path.exists(f"/proc/{args.pid}"):
        raise SystemExit(f"process {args.pid} is not running")
    start_ticks = {p: cpu_ticks(p) for p in tree(args.pid)}
    last_ticks = dict(start_ticks)
    t0 = time.monotonic()
    m0 = modbus_counter(args.modbus_stats)
    messages = json_counter if args.json_counter else count_lines
    source = args.json_counter or args.lines
    l0 = messages(source) if source else 0
    rss = []
    procs = 0
    while True:
        pids = tree(args.pid)
        procs = max(procs, len(pids))
        rss.append(sum(rss_kb(p) for p in pids))
        for p in pids:
            t = cpu_ticks(p)
            if t is not None:
                last_ticks[p] = t
                start_ticks.setdefault(p, 0)
        left = args.seconds - (time.monotonic() - t0)
        if left <= 0:
            break
        time.sleep(min(1.0, left))
    wall = time.monotonic() - t0
    if not os.path.exists(f"/proc/{args.pid}"):
        raise SystemExit(f"process {args.pid} exited during the sample")
    m1 = modbus_counter(args.modbus_stats)
    l1 = messages(source) if source else 0
    ticks = sum(last_ticks[p] - (start_ticks[p] or 0) for p in last_ticks)
    mb_dt = (m1[0] - m0[0]) or wall
    per_dev = [b - a for a, b in zip(m0[3], m1[3])]
    json.dump(
        {
            "wall_s": round(wall, 1),
            "processes": procs,
            "rss_mb_mean": round(sum(rss) / len(rss) / 1024, 1),
            "rss_mb_max": round(max(rss) / 1024, 1),
            "cpu_pct": round(100.0 * ticks / CLK_TCK / wall, 2),
            "modbus_req_s": round((m1[1] - m0[1]) / mb_dt, 1),
            "modbus_regs_s": round((m1[2] - m0[2]) / mb_dt, 1),
            "devices_polled": sum(1 for n in per_dev if n),
            "messages_s": round((l1 - l0) / wall, 1) if source else None,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()

"""Prints the table of scripts/bench/modbus from the two samples (JSON files written by
sample.py; the lwgate one may be missing or hold {"error": ...}). Exit status 0 when
every target is met, 1 otherwise."""

import json
import sys

RSS_MAX_MB = 12.0
CPU_MAX_PCT = 2.0
RATIO_MIN = 5.0


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return {"error": f"no sample ({e})"}


def fmt(v, unit=""):
    return "-" if v is None else f"{v:g}{unit}"


def main():
    tb, lw, devices = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3])
    rows = [
        ("RSS MB (peak)", "rss_mb_max"),
        ("RSS MB (mean)", "rss_mb_mean"),
        ("CPU % of one core", "cpu_pct"),
        ("Modbus requests/s", "modbus_req_s"),
        ("Modbus registers/s", "modbus_regs_s"),
        ("devices polled", "devices_polled"),
        ("messages/s upstream", "messages_s"),
        ("processes", "processes"),
    ]
    print()
    print(f"{'':22} {'lwgate':>10} {'TB gateway':>11} {'TB/lwgate':>10}")
    for label, key in rows:
        a, b = lw.get(key), tb.get(key)
        ratio = f"{b / a:.1f}x" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a else "-"
        print(f"{label:22} {fmt(a):>10} {fmt(b):>11} {ratio:>10}")
    for name, s in (("lwgate", lw), ("TB gateway", tb)):
        if "error" in s:
            print(f"{name}: {s['error']}")

    polled = lw.get("devices_polled") or 0
    valid = "error" not in lw and "error" not in tb and polled == devices and (tb.get("devices_polled") == devices)
    why = (
        ""
        if valid
        else f" (invalid run: lwgate polled {polled}/{devices} devices, TB {tb.get('devices_polled', 0)}/{devices})"
    )

    def verdict(ok):
        if not valid:
            return "MISS" + why
        return "PASS" if ok else "MISS"

    lw_rss, lw_cpu = lw.get("rss_mb_max"), lw.get("cpu_pct")
    tb_rss, tb_cpu = tb.get("rss_mb_max"), tb.get("cpu_pct")
    targets = [
        (f"lwgate RSS <= {RSS_MAX_MB:g} MB", lw_rss is not None and lw_rss <= RSS_MAX_MB),
        (f"lwgate CPU <= {CPU_MAX_PCT:g}% of one core", lw_cpu is not None and lw_cpu <= CPU_MAX_PCT),
        (
            f"RSS at least {RATIO_MIN:g}x below TB",
            bool(lw_rss and tb_rss and tb_rss / lw_rss >= RATIO_MIN),
        ),
        (
            f"CPU at least {RATIO_MIN:g}x below TB",
            bool(lw_cpu is not None and tb_cpu and (lw_cpu == 0 or tb_cpu / lw_cpu >= RATIO_MIN)),
        ),
    ]
    print()
    allok = valid
    for label, ok in targets:
        print(f"  {label:34} {verdict(ok)}")
        allok = allok and ok
    return 0 if allok else 1


if __name__ == "__main__":
    sys.exit(main())

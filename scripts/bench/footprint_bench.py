"""The measuring side of scripts/bench/footprint (issue 15): lwgate's footprint when
registered with a local LwM2M server and idle.

For each scenario (`idle`: one NoSec server, no devices; `modbus`: the same with 100
Modbus/TCP devices polled at 1 Hz; `dtls`: one PSK server over DTLS) it

1. starts lwgate `--starts` times with a fresh state database and as often with an
   existing one (alternating), and times each start: from the child's execve of
   lwgate (timestamped in the forked child just before it) to the moment the LwM2M server (tests/lwm2m_server.py, aiocoap, in
   this process) answers the Register with 2.01 -- the server side's clock, the
   same monotonic clock as the fork's; every start is stopped with SIGTERM (lwgate
   de-registers) before the next;
2. starts it once more (existing database), waits for the registration and a few
   seconds of settling, then for `--idle-s` seconds counts its context switches
   (voluntary + involuntary over every thread, /proc/PID/task/*/status: each one is a
   wake-up) and the watchdog pings it sends to the bench's NOTIFY_SOCKET
   (WATCHDOG_USEC as systemd sets it from lwgate.service's WatchdogSec); at the end
   reads RSS, anonymous RSS and PSS (/proc/PID/smaps_rollup) and where the RSS is
   (/proc/PID/smaps, by mapping).

Writes every figure to `--out` (JSON) and prints the table with the targets (on the
`idle` scenario; the others are shown so that the figures stay honest as the product
grows). Exit status 0 when every target is met, 1 otherwise, 2 when the run failed.
"""

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from aiocoap import Code  # noqa: E402
from lwm2m_server import TestServer  # noqa: E402

EP = "bench-gw"
PSK = bytes.fromhex("00112233445566778899aabbccddeeff")
MIB = 1024 * 1024

# Issue 15's targets, judged on the idle scenario.
TARGETS = {
    "rss_mb": 3.0,
    "anon_mb": 1.0,
    "binary_mb": 4.0,
    "start_existing_ms": 4.0,
    "wakeups_per_s": 1.0,
}


def log(msg):
    print(f"{time.strftime('%H:%M:%S')} footprint: {msg}", file=sys.stderr, flush=True)


class Stop(Exception):
    pass


def on_term(*_):
    raise Stop("terminated (time limit or ^C)")


# ---- systemd's side: NOTIFY_SOCKET and the watchdog -----------------------------------


class Notify:
    """The NOTIFY_SOCKET systemd would give lwgate: every datagram, timestamped."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages = []
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode(errors="replace")))

    def watchdog_pings(self, since, until):
        with self._lock:
            return sum(1 for t, m in self.messages if since <= t < until and "WATCHDOG=1" in m.split("\n"))

    def close(self):
        self._stop = True
        self.sock.close()


def watchdog_usec():
    """WatchdogSec of systemd/lwgate.service, as systemd passes it (WATCHDOG_USEC)."""
    unit = (ROOT / "systemd" / "lwgate.service").read_text()
    m = re.search(r"^WatchdogSec=(\d+)s?\s*$", unit, re.M)
    return int(m.group(1)) * 1_000_000 if m else None


# ---- the LwM2M server: Register answers timestamped -----------------------------------


class Server:
    """tests/lwm2m_server.TestServer, with the time of every 2.01 to a Register."""

    def __init__(self):
        self.srv = TestServer(host="127.0.0.1")
        self.created = []
        self._lock = threading.Lock()
        handle = self.srv._handle

        def timed(request):
            resp = handle(request)
            if (
                request.code == Code.POST
                and list(request.opt.uri_path) == ["rd"]
                and getattr(resp, "code", None) == Code.CREATED
            ):
                with self._lock:
                    self.created.append(time.monotonic())
            return resp

        self.srv._handle = timed

    @property
    def port(self):
        return self.srv.port

    def register_after(self, t0, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                later = [t for t in self.created if t >= t0]
            if later:
                return later[0]
            time.sleep(0.0005)
        return None

    def received_after(self, t0):
        """When the server's socket got the first datagram after t0 (the Register),
        before aiocoap looked at it."""
        with self.srv._cond:
            return next((t for t, _, _ in self.srv.wire if t >= t0), None)

    def close(self):
        self.srv.close()


# ---- lwgate ------------------------------------------------------------------------------


class Agent:
    """One `lwgate run`, forked and exec'd here so that WATCHDOG_PID names it."""

    def __init__(self, binary, config, logfile, env):
        self.binary = str(binary)
        self.config = str(config)
        self.logfile = logfile
        self.env = env
        self.pid = None
        self.t0 = None

    def start(self):
        env = dict(self.env)
        fd = os.open(self.logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        args = [self.binary, "run", "--config", self.config]
        r, w = os.pipe()
        forked = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: exec at once (this process has threads)
            try:
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.setsid()
                env["WATCHDOG_PID"] = str(os.getpid())
                # The clock starts here, at the exec: forking this (large) process
                # is no part of lwgate's start.
                os.write(w, repr(time.monotonic()).encode())
                os.execve(self.binary, args, env)
            finally:
                os._exit(127)
        os.close(fd)
        os.close(w)
        stamp = os.read(r, 64)
        os.close(r)
        self.t0 = float(stamp) if stamp else forked
        self.pid = pid
        return self

    def alive(self):
        if self.pid is None:
            return False
        done, _ = os.waitpid(self.pid, os.WNOHANG)
        if done:
            self.pid = None
            return False
        return True

    def stop(self, timeout=10):
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.pid = None
                return
            time.sleep(0.01)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        self.pid = None

    def tail(self, n=20):
        try:
            return "\n".join(Path(self.logfile).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def proc_threads(pid):
    return [int(t) for t in os.listdir(f"/proc/{pid}/task")]


def ctx_switches(pid):
    """Voluntary and involuntary context switches summed over every thread."""
    vol = invol = 0
    for tid in proc_threads(pid):
        try:
            text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue
        vol += int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", text, re.M).group(1))
        invol += int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", text, re.M).group(1))
    return vol, invol


def kb_fields(text):
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+):\s+(\d+) kB", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def memory(pid, binary):
    """RSS, anonymous RSS, PSS (smaps_rollup) and the RSS by mapping (smaps)."""
    roll = kb_fields(Path(f"/proc/{pid}/smaps_rollup").read_text())
    status = kb_fields(Path(f"/proc/{pid}/status").read_text())
    groups = {}
    name = None
    exe = os.path.realpath(binary)
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            path = parts[5] if len(parts) > 5 else "[anon]"
            if path == exe:
                path = "lwgate binary"
            name = os.path.basename(path) if path.startswith("/") else path
            name = re.sub(r"\.so[.\d]*$", ".so", name)
            groups.setdefault(name, {"rss_kb": 0, "anon_kb": 0, "pss_kb": 0})
        elif name and parts and parts[0] in ("Rss:", "Anonymous:", "Pss:"):
            key = {"Rss:": "rss_kb", "Anonymous:": "anon_kb", "Pss:": "pss_kb"}[parts[0]]
            groups[name][key] += int(parts[1])
    top = sorted(groups.items(), key=lambda kv: -kv[1]["rss_kb"])
    return {
        "rss_kb": roll.get("Rss"),
        "anon_kb": roll.get("Anonymous"),
        "pss_kb": roll.get("Pss"),
        "vmrss_kb": status.get("VmRSS"),
        "rss_file_kb": status.get("RssFile"),
        "threads": len(proc_threads(pid)),
        "by_mapping": [{"mapping": k, **v} for k, v in top if v["rss_kb"] > 0],
    }


# ---- scenarios ---------------------------------------------------------------------------


def ports_free(base, n):
    for p in range(base, base + n):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            return False
        finally:
            s.close()
    return True


class Modbus:
    """N Modbus/TCP devices: scripts/bench/modbus_bench/devices.py (pymodbus)."""

    def __init__(self, work, n, registers, python):
        self.n = n
        self.registers = registers
        for base in (15001, 16001, 17001, 18001, 19001, 21001, 23001, 26001, 28001):
            if ports_free(base, n):
                self.base = base
                break
        else:
            raise RuntimeError(f"no free range of {n} ports on 127.0.0.1")
        self.stats = work / "modbus-stats.jsonl"
        ready = work / "devices.ready"
        self.log = open(work / "devices.log", "w")
        self.proc = subprocess.Popen(
            [python, str(ROOT / "scripts/bench/modbus_bench/devices.py"), "--devices", str(n),
             "--base-port", str(self.base), "--registers", str(registers), "--stats", str(self.stats),
             "--ready", str(ready), "--max-seconds", "400"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 40
        while not (ready.exists() and ready.stat().st_size):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Modbus devices did not start: " + (work / "devices.log").read_text()[-2000:])
            time.sleep(0.2)
        log(f"{n} Modbus/TCP devices on 127.0.0.1:{self.base}-{self.base + n - 1}")

    def write_devices(self, devdir):
        for i in range(1, self.n + 1):
            text = (
                f'[device]\nid = "dev{i}"\nprefix = "dev{i}"\nprotocol = "modbus-tcp"\n'
                f'[modbus]\nhost = "127.0.0.1"\nport = {self.base + i - 1}\nunit = 1\npoll_ms = 1000\n'
            )
            for k in range(self.registers):
                text += f'[[modbus.point]]\npath = "3300/{k}/5700"\nregister = "holding-register"\naddress = {k}\ntype = "u16"\n'
            (devdir / f"dev{i}.toml").write_text(text)

    def per_device(self):
        try:
            return json.loads(self.stats.read_text().splitlines()[-1])["per_device"]
        except (OSError, IndexError, ValueError, KeyError):
            return [0] * self.n

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def config_text(work, server_toml):
    return (
        f'[endpoint]\nname = "{EP}"\n'
        f'[store]\npath = "{work / "state" / "state.db"}"\n'
        f'[control]\nsocket = "{work / "control.sock"}"\n'
        # As packaged (etc/lwgate.toml): info, the IPSO definitions loaded.
        f'[log]\nlevel = "info"\n'
        f'[lwm2m]\nobject_dirs = ["{ROOT / "objects"}"]\n'
        f"[devices]\ndir = \"{work / 'devices.d'}\"\n"
        f"{server_toml}"
    )


def run_scenario(name, args, binary, work):
    work.mkdir(parents=True)
    (work / "state").mkdir()
    (work / "devices.d").mkdir()
    server = Server()
    relay = modbus = None
    notify = Notify(work / "notify.sock")
    agent = None
    try:
        uri = f"coap://127.0.0.1:{server.port}"
        security = ""
        if name == "dtls":
            from dtls_peer import DtlsPeer

            relay = DtlsPeer(server.port, psk={EP: PSK})
            relay.__enter__()
            uri = relay.uri
            security = f'security = "psk"\npsk_identity = "{EP}"\npsk_key = "{PSK.hex()}"\n'
        if name == "modbus":
            modbus = Modbus(work, args.devices, 10, args.python)
            modbus.write_devices(work / "devices.d")
        server_toml = f'[[server]]\nuri = "{uri}"\nssid = 101\nlifetime = 300\n{security}'
        config = work / "lwgate.toml"
        config.write_text(config_text(work, server_toml))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "NOTIFY_SOCKET": str(work / "notify.sock"),
        }
        usec = watchdog_usec()
        if usec:
            env["WATCHDOG_USEC"] = str(usec)

        # 1. start -> registered, fresh and existing state database, alternating.
        times = {"fresh": [], "existing": []}
        sent = {"fresh": [], "existing": []}
        for i in range(args.starts):
            for kind in ("fresh", "existing"):
                if kind == "fresh":
                    for f in (work / "state").glob("state.db*"):
                        f.unlink()
                agent = Agent(binary, config, work / f"lwgate-{kind}.log", env).start()
                t = server.register_after(agent.t0, 20)
                if t is None:
                    raise RuntimeError(f"{name}: lwgate did not register within 20 s:\n{agent.tail()}")
                times[kind].append((t - agent.t0) * 1000)
                r = server.received_after(agent.t0)
                sent[kind].append((r - agent.t0) * 1000 if r is not None else None)
                agent.stop()
                agent = None
        log(
            f"{name}: start -> registered, median of {args.starts}: "
            f"existing {statistics.median(times['existing']):.2f} ms, fresh {statistics.median(times['fresh']):.2f} ms"
        )

        # 2. registered and idle.
        agent = Agent(binary, config, work / "lwgate-idle.log", env).start()
        if server.register_after(agent.t0, 20) is None:
            raise RuntimeError(f"{name}: lwgate did not register within 20 s:\n{agent.tail()}")
        if modbus:  # every device polled once before the window
            base = modbus.per_device()
            deadline = time.monotonic() + 30
            while sum(1 for a, b in zip(base, modbus.per_device()) if b > a) < modbus.n:
                if time.monotonic() > deadline:
                    log(f"{name}: not every device was polled within 30 s")
                    break
                time.sleep(0.5)
        time.sleep(args.settle_s)
        if not agent.alive():
            raise RuntimeError(f"{name}: lwgate exited:\n{agent.tail()}")
        base_polls = modbus.per_device() if modbus else None
        t_start = time.monotonic()
        v0, n0 = ctx_switches(agent.pid)
        time.sleep(args.idle_s)
        v1, n1 = ctx_switches(agent.pid)
        t_end = time.monotonic()
        span = t_end - t_start
        mem = memory(agent.pid, binary)
        result = {
            "start_fresh_ms": times["fresh"],
            "start_existing_ms": times["existing"],
            "register_received_fresh_ms": sent["fresh"],
            "register_received_existing_ms": sent["existing"],
            "idle_s": round(span, 2),
            "wakeups_voluntary": v1 - v0,
            "wakeups_involuntary": n1 - n0,
            "wakeups_per_s": round((v1 - v0 + n1 - n0) / span, 2),
            "watchdog_pings": notify.watchdog_pings(t_start, t_end),
            "watchdog_usec": usec,
            **mem,
        }
        if modbus:
            now = modbus.per_device()
            result["modbus_requests_per_s"] = round((sum(now) - sum(base_polls)) / span, 1)
        agent.stop()
        agent = None
        return result
    finally:
        if agent is not None:
            agent.stop()
        if modbus is not None:
            modbus.close()
        if relay is not None:
            relay.__exit__(None, None, None)
        notify.close()
        server.close()


def binary_sizes(binary, work):
    stripped = work / "lwgate.stripped"
    subprocess.run(["strip", "-o", str(stripped), str(binary)], check=True)
    return {"binary_file_bytes": os.path.getsize(binary), "binary_stripped_bytes": os.path.getsize(stripped)}


# ---- the table ---------------------------------------------------------------------------


def mb(kb):
    return None if kb is None else kb / 1024


def report(res, scenarios):
    rows = []

    def fmt(v, unit):
        if v is None:
            return "-"
        return f"{v:.2f} {unit}" if unit == "ms" else f"{v:.1f} {unit}" if unit else f"{v:.2f}"

    def row(label, key, unit, get):
        vals = {s: (get(res[s]) if s in res else None) for s in scenarios}
        target = TARGETS.get(key)
        v = vals.get("idle")
        if target is None:
            verdict = ""
        elif "idle" not in scenarios:
            verdict = "(idle not run)"
        elif v is None:
            verdict = "MISS (not measured)"
        else:
            verdict = "ok" if v <= target else "MISS"
        rows.append((label, [fmt(vals[s], unit) for s in scenarios], f"<= {target:g} {unit}".strip() if target is not None else "", verdict))
        return verdict

    med = statistics.median
    verdicts = [
        row("RSS", "rss_mb", "MB", lambda r: mb(r["rss_kb"])),
        row("anonymous RSS", "anon_mb", "MB", lambda r: mb(r["anon_kb"])),
        row("PSS", "pss_mb", "MB", lambda r: mb(r["pss_kb"])),
        row("start -> registered, existing db", "start_existing_ms", "ms", lambda r: med(r["start_existing_ms"])),
        row("start -> registered, fresh db", "start_fresh_ms", "ms", lambda r: med(r["start_fresh_ms"])),
        row("  of which to the Register's arrival", "register_received_existing_ms", "ms",
            lambda r: med([x for x in r["register_received_existing_ms"] if x is not None])),
        row("wake-ups per second, idle", "wakeups_per_s", "", lambda r: r["wakeups_per_s"]),
        row("watchdog pings in the window", "watchdog_pings", "", lambda r: float(r["watchdog_pings"])),
        row("threads", "threads", "", lambda r: float(r["threads"])),
    ]
    size = res["binary"]["binary_stripped_bytes"] / MIB
    ok = size <= TARGETS["binary_mb"]
    verdicts.append("ok" if ok else "MISS")
    names = {"idle": "idle", "modbus": f"{args_devices} Modbus", "dtls": "DTLS PSK"}
    w = 34
    head = f"{'':{w}}" + "".join(f"{names[s]:>14}" for s in scenarios) + f"  {'target (idle)':>14}  "
    print(head)
    for label, vals, target, verdict in rows:
        print(f"{label:{w}}" + "".join(f"{v:>14}" for v in vals) + f"  {target:>14}  {verdict}")
    print(f"{'binary, stripped':{w}}" + f"{size:>11.2f} MB" + " " * (14 * (len(scenarios) - 1)) + f"  {'<= 4 MB':>14}  {'ok' if ok else 'MISS'}")
    print()
    print("MB = 2^20 bytes. start -> registered: from the execve of lwgate to the server's 2.01 (median")
    print("of the runs); \"of which\": to the Register datagram's arrival at the server's socket (existing db),")
    print("the rest is the test server's (aiocoap's) own time. Wake-ups: context switches of every thread over")
    print("the window. Targets: issue 15, on the idle column.")
    for s in scenarios:
        if s not in res:
            continue
        r = res[s]
        top = ", ".join(f"{m['mapping']} {m['rss_kb'] / 1024:.2f}" for m in r["by_mapping"][:7])
        print(f"{names[s]}: RSS by mapping (MB): {top}")
        extra = f"; Modbus requests/s {r['modbus_requests_per_s']}" if "modbus_requests_per_s" in r else ""
        print(
            f"{'':{len(names[s])}}  start ms existing {['%.1f' % x for x in r['start_existing_ms']]},"
            f" fresh {['%.1f' % x for x in r['start_fresh_ms']]}; wake-ups {r['wakeups_voluntary']} voluntary,"
            f" {r['wakeups_involuntary']} involuntary in {r['idle_s']} s{extra}"
        )
    return all(v in ("ok", "", "(idle not run)") for v in verdicts)


args_devices = 100


def main():
    global args_devices
    ap = argparse.ArgumentParser()
    ap.add_argument("--lwgate", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--scenarios", default="idle,modbus,dtls")
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--idle-s", type=float, default=30)
    ap.add_argument("--settle-s", type=float, default=3)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--python", default=sys.executable, help="python with pymodbus (devices.py)")
    ap.add_argument("--out")
    args = ap.parse_args()
    args_devices = args.devices
    signal.signal(signal.SIGTERM, on_term)
    work = Path(args.work)
    binary = Path(args.lwgate).resolve()
    scenarios = [s for s in args.scenarios.split(",") if s]
    res = {"binary": binary_sizes(binary, work)}
    try:
        for s in scenarios:
            log(f"scenario {s}")
            res[s] = run_scenario(s, args, binary, work / s)
    except (Stop, RuntimeError, AssertionError) as e:
        log(f"failed: {e}")
        if args.out:
            Path(args.out).write_text(json.dumps(res, indent=1))
        report(res, scenarios)
        return 2
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    print()
    return 0 if report(res, scenarios) else 1


if __name__ == "__main__":
    sys.exit(main())

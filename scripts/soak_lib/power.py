"""scripts/soak --power: a run of lwgate under strace in which live notifications
are written ahead, stored ones (an outage) are replayed, and the server writes
/1/0/3, writes attributes and starts observations; then trace.py's proof that
each of them was on disk (fsync of the WAL) before the datagram that
acknowledged it left. Then cut.py: the power cut itself, replayed from the
trace at the worst moments (just after each datagram left)."""

import shutil
import tempfile
import time
from pathlib import Path

from .common import lwgate_bin
from . import trace as tr

PATH = "/soak/3300/0/5700"
FAST = "ack_timeout = 1\nmax_retransmit = 1\n"
TRACED = "openat,pwrite64,pwritev,pwritev2,write,writev,fsync,fdatasync,ftruncate,unlink,rename,sendto,sendmsg,sendmmsg,recvfrom,recvmsg,recvmmsg"
WRITE_BASE = 1280770048  # /1/0/3 values a page cannot hold by chance


def strace_cmd(out: Path):
    exe = shutil.which("strace")
    if exe is None:
        raise SystemExit("soak --power: strace not found: apt-get install strace")
    return [exe, "-f", "-ttt", "-T", "-yy", "-xx", "-s", "65536", "-o", str(out), "-e", f"trace={TRACED}"]


def run_traced(seconds, work: Path, binary=None, keep=False):
    """The scenario; returns (trace path, server port as lwgate saw it, facts)."""
    from aiocoap import Code
    from lwm2m_server import SENML_JSON, TEXT, TestServer

    from .counter import CounterDevice, device_file
    from .daemon import EP, Lwgate
    from .wire import Relay

    binary = binary or lwgate_bin()
    dev = CounterDevice()
    srv = TestServer()
    relay = Relay(srv.port)
    gw = Lwgate(binary, work, relay.uri, FAST)
    (gw.devices / "soak.toml").write_text(device_file(dev.port))
    out = work / "strace.txt"
    facts = {"writes": 0, "attributes": 0, "observes": 0, "outage": 0.0}
    try:
        gw.start(wrap=strace_cmd(out), timeout=30)
        srv.wait_registered(EP, 30)
        for path, v in (("/1/0/18", b"1"), ("/1/0/19", b"2")):
            assert srv.write(EP, path, v, TEXT).code.is_successful()
        deadline = time.monotonic() + 15
        while srv.read(EP, PATH).code != Code.CONTENT:
            if time.monotonic() > deadline:
                raise RuntimeError("the counter was never polled")
            time.sleep(0.2)
        assert srv.write_attributes(EP, PATH, "pmin=0", "pmax=3600").code.is_successful()
        srv.observe(EP, PATH, accept=SENML_JSON)
        facts["observes"] += 1
        dev.start_counting()
        t0 = time.monotonic()
        cut_at, cut_len = seconds / 4, max(5.0, min(8.0, seconds / 4))
        k = 0
        while time.monotonic() - t0 < seconds:
            el = time.monotonic() - t0
            if cut_at <= el < cut_at + cut_len:
                if not relay.cut:
                    relay.cut = True
                    facts["outage"] = cut_len
                time.sleep(0.2)
                continue
            if relay.cut:
                relay.cut = False
                time.sleep(2)  # the Update and the replay first
            k += 1
            if srv.request(EP, Code.PUT, "/1/0/3", str(WRITE_BASE + k).encode(), timeout=20, content_format=TEXT).code.is_successful():
                facts["writes"] += 1
            if k % 3 == 0:
                if srv.write_attributes(EP, PATH, "pmin=0", f"pmax={3600 + k}").code.is_successful():
                    facts["attributes"] += 1
            if k % 4 == 0 and facts["outage"]:
                srv.observe(EP, "/soak/3300/0", accept=SENML_JSON)
                facts["observes"] += 1
            time.sleep(1.5)
        dev.stop_counting()
        time.sleep(2)
        gw.stop(timeout=20)
        return out, facts, gw
    finally:
        if gw.alive():
            gw.kill9()
        relay.close()
        srv.close()
        dev.close()


def server_port_of(calls):
    """The relay's port: where lwgate sent its Register."""
    from aiocoap import Message

    for c in calls:
        if c.name == "sendto" and "UDP" in c.target and c.data:
            try:
                m = Message.decode(c.data)
            except Exception:  # noqa: BLE001
                continue
            if list(m.opt.uri_path) == ["rd"]:
                return int(c.target.rsplit(":", 1)[1].rstrip("]"))
    raise RuntimeError("no Register in the trace")


def report(chk: tr.Check):
    ms = sorted(chk.margins)
    med = ms[len(ms) // 2] * 1000 if ms else float("nan")
    rows = [
        ("notification datagrams checked", chk.notifications),
        ("  records in them", chk.records),
        ("  replayed packs (several stored records)", chk.replayed_packs),
        ("  records stored and replayed (sent > 1.5 s after their time)", chk.stored),
        ("server Writes answered", chk.writes),
        ("Write-Attributes answered", chk.attributes),
        ("Observe registrations answered", chk.observes),
        ("WAL commits (commit frames)", chk.wal_commits),
        ("WAL sync call", ", ".join(sorted(chk.sync_name)) or "none"),
        ("sync end -> datagram, min / median ms", f"{ms[0] * 1000:.3f} / {med:.3f}" if ms else "-"),
        ("VIOLATIONS", len(chk.violations)),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{w}}  {v}" for k, v in rows)


def main(args):
    work = Path(tempfile.mkdtemp(prefix="lwgate-power."))
    t = time.monotonic()
    print(f"soak --power: a {args.seconds:.0f} s run under strace (bound {args.seconds + 90:.0f} s)", flush=True)
    problems = []
    try:
        out, facts, gw = run_traced(args.seconds, work)
        calls = tr.parse(out.open(errors="replace"))
        port = server_port_of(calls)
        chk = tr.check(calls, port)
        print(f"soak --power: {len(calls)} system calls traced, outage {facts['outage']:.0f} s, "
              f"server port {port}, {time.monotonic() - t:.0f} s")
        print(report(chk))
        by_kind = {}
        for v in chk.violations:
            by_kind.setdefault(v.what, []).append(v)
        for what, vs in by_kind.items():
            print(f"soak --power: FAIL: {len(vs)} x {what}; first: {vs[0].detail}")
            problems.append(what)
        if chk.stored == 0 or chk.writes == 0:
            problems.append("nothing to check: no stored notification or no Write in the trace")
        try:
            from . import cut

            cuts = cut.replay(calls, work / "cut", port)
            print(cut.report(cuts))
            problems += [f"power cut: {p}" for p in cut.problems(cuts)]
        except ImportError:
            pass
        if not problems:
            print("soak --power: OK")
        return 1 if problems else 0
    finally:
        if args.keep:
            print(f"soak --power: work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

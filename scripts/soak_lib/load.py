"""scripts/load: a server sending `rate` requests a second to a registered lwgate
for `seconds`: reads, discovers and malformed datagrams of every kind in
coap_bytes.KINDS, each answer checked against what the spec allows; lwgate's RSS
sampled every second; and meanwhile an observation of the Modbus counter (1 Hz
through /25), every value of which must arrive.

The server is one UDP socket (lwgate's socket is connected to its server's
address, so the requests must come from there): it answers the Register and
Updates, ACKs confirmable notifications, and sends and matches the load itself
in one thread (pacing by the clock; the achieved rate is measured and printed)."""

import argparse
import random
import selectors
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from .common import lwgate_bin
from . import coap_bytes as cb
from . import ledger

PATH = "/soak/3300/0/5700"
OBS_TOKEN = b"OBSERVE1"


class LoadServer:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.client = None
        self.registered = threading.Event()
        self.mid = random.randrange(1 << 16)
        self.tok = 0
        # mid -> (kind, sent at, token); token -> mid (NON requests answered by token)
        self.out: dict[int, tuple[str, float, bytes]] = {}
        self.by_token: dict[bytes, int] = {}
        self.answers: dict[int, tuple[str, float]] = {}
        self.garbage: dict[int, bytes] = {}
        self.notes: list = []  # (time, bytes) of notifications
        self.unexpected = Counter()
        self.lock = threading.Lock()
        self.waiting: dict[int, threading.Event] = {}
        self.replies: dict[int, tuple] = {}

    def next_mid(self):
        self.mid = (self.mid + 1) & 0xFFFF
        return self.mid

    def next_token(self):
        self.tok += 1
        return self.tok.to_bytes(8, "big")

    def send(self, data):
        try:
            self.sock.sendto(data, self.client)
            return True
        except (BlockingIOError, OSError):
            return False

    def pump(self, until):
        """Receives and handles datagrams until `until` (monotonic)."""
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        while True:
            left = until - time.monotonic()
            if left <= 0 and not self._ready():
                break
            if left > 0:
                sel.select(left)
            while True:
                try:
                    data, addr = self.sock.recvfrom(65536)
                except BlockingIOError:
                    break
                self.handle(data, addr, time.monotonic())
        sel.close()

    def _ready(self):
        try:
            data, addr = self.sock.recvfrom(65536, socket.MSG_PEEK)
            return True
        except BlockingIOError:
            return False

    def handle(self, data, addr, now):
        m = cb.parse(data)
        if m is None:
            self.unexpected["undecodable from lwgate"] += 1
            return
        mtype, code, mid, token, opts, payload = m
        if code.startswith("0.") and code != "0.00":
            self._lwgate_request(mtype, code, mid, token, opts, addr)
            return
        if mtype in (cb.ACK, cb.RST):
            if mid in self.waiting:
                self.replies[mid] = (mtype, code, token, opts, payload)
                self.waiting.pop(mid).set()
                return
            if mid in self.out:
                self._answered(mid, "RST" if mtype == cb.RST else (code if code != "0.00" else "ACK"), now)
                return
            self.unexpected[f"{'RST' if mtype == cb.RST else 'ACK'} for no request of ours"] += 1
            return
        # CON/NON with a response code: a notification, or a NON response by token.
        if mtype == cb.CON:
            self.send(cb.header(cb.ACK, 0, mid))
        if token == OBS_TOKEN and cb.OBSERVE in opts:
            self.notes.append((time.time(), data))
            return
        if token in self.by_token:
            self._answered(self.by_token[token], code, now)
            return
        self.unexpected[f"{code} with an unknown token"] += 1

    def _answered(self, mid, answer, now):
        kind, sent, token = self.out[mid]
        if mid in self.answers:
            self.unexpected["second answer to one request"] += 1
            return
        self.answers[mid] = (answer, now - sent)

    def _lwgate_request(self, mtype, code, mid, token, opts, addr):
        path = [p.decode(errors="replace") for p in opts.get(cb.URI_PATH, [])]
        self.client = addr
        if code == "0.02" and path == ["rd"]:
            reply = cb.header(cb.ACK, 0x41, mid, token) + cb.options([(8, b"rd"), (8, b"1")])  # 2.01 Location-Path
            self.registered.set()
        elif code == "0.02" and path[:1] == ["rd"]:
            reply = cb.header(cb.ACK, 0x44, mid, token)  # 2.04
        elif code == "0.04" and path[:1] == ["rd"]:
            reply = cb.header(cb.ACK, 0x42, mid, token)  # 2.02
        else:
            reply = cb.header(cb.ACK, 0x84, mid, token)  # 4.04
        if mtype == cb.CON:
            self.send(reply)

    def call(self, data, mid, timeout=5.0):
        """A request of the set-up (blocking, before the load): its reply."""
        ev = threading.Event()
        self.waiting[mid] = ev
        self.send(data)
        end = time.monotonic() + timeout
        while not ev.is_set() and time.monotonic() < end:
            self.pump(min(end, time.monotonic() + 0.05))
        return self.replies.pop(mid, None)


def run(rate, seconds, seed, binary=None, log=print):
    from .counter import CounterDevice, device_file
    from .daemon import Lwgate

    binary = binary or lwgate_bin()
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="lwgate-load."))
    dev = CounterDevice()
    srv = LoadServer()
    gw = Lwgate(binary, work, f"coap://127.0.0.1:{srv.port}", log_level="info")
    (gw.devices / "soak.toml").write_text(device_file(dev.port))
    result = {}
    try:
        gw.start()
        end = time.monotonic() + 20
        while not srv.registered.is_set() and time.monotonic() < end:
            srv.pump(time.monotonic() + 0.1)
        if not srv.registered.is_set():
            raise RuntimeError(f"lwgate never registered:\n{gw.tail()}")
        # The observation: every change of the counter (pmin 0), CON notifications.
        end = time.monotonic() + 10
        while True:
            mid = srv.next_mid()
            r = srv.call(cb.request(cb.CON, mid, srv.next_token(), PATH), mid)
            if r and r[1] == "2.05":
                break
            if time.monotonic() > end:
                raise RuntimeError("the counter was never polled")
            time.sleep(0.2)
        mid = srv.next_mid()
        q = [(cb.URI_QUERY, b"pmin=0"), (cb.URI_QUERY, b"pmax=3600")]
        r = srv.call(cb.request(cb.CON, mid, srv.next_token(), PATH, code=3, extra=q), mid)
        assert r and r[1] == "2.04", r
        mid = srv.next_mid()
        r = srv.call(cb.request(cb.CON, mid, OBS_TOKEN, PATH, accept=cb.SENML_JSON, extra=[(cb.OBSERVE, b"")]), mid)
        assert r and r[1] == "2.05", r
        start_value = dev.value
        dev.start_counting()
        srv.pump(time.monotonic() + 1.5)
        life_start = gw.lives[-1].started
        rss = []
        kinds = list(cb.KINDS)
        weights = [cb.KINDS[k][0] for k in kinds]
        t0 = time.monotonic()
        next_sample = t0
        sent = Counter()
        send_fail = 0
        gap = 1.0 / rate
        due = t0
        n = 0
        total = int(rate * seconds)
        rss.append((0.0, gw.rss_kib()))
        cpu0 = gw.cpu_seconds()
        while n < total:
            now = time.monotonic()
            if now >= next_sample:
                rss.append((now - t0, gw.rss_kib()))
                next_sample += 1.0
            if now < due:
                srv.pump(due)
                continue
            kind = rng.choices(kinds, weights)[0]
            mid, token = srv.next_mid(), srv.next_token()
            data = cb.make(kind, mid, token, rng)
            srv.out[mid] = (kind, time.monotonic(), token)
            if kind == "garbage":
                srv.garbage[mid] = data
            srv.by_token[token] = mid
            if srv.send(data):
                sent[kind] += 1
            else:
                send_fail += 1
            n += 1
            due += gap
        elapsed = time.monotonic() - t0
        cpu = (gw.cpu_seconds() or 0) - (cpu0 or 0)
        # Stragglers: a second for late answers (lwgate's own backlog shows here).
        srv.pump(time.monotonic() + 3.0)
        rss.append((time.monotonic() - t0, gw.rss_kib()))
        dev.stop_counting()
        srv.pump(time.monotonic() + 2.0)
        changes, reads = dev.snapshot()
        gw.stop()
        lives = [(life_start, gw.lives[-1].ended, "sigterm")]
        led = ledger.build(lives, reads, srv.notes, OBS_TOKEN, after=start_value)
        # Values polled after the load ended also count: the observation went on.
        per = defaultdict(Counter)
        latency = []
        odd = defaultdict(list)
        for mid, (kind, at, token) in srv.out.items():
            ans, lat = srv.answers.get(mid, ("none", None))
            per[kind][ans] += 1
            if kind == "garbage" and not cb.allowed(kind, ans) and len(odd[kind]) < 5:
                odd[kind].append(srv.garbage[mid].hex())
            if lat is not None:
                latency.append(lat)
        result = dict(cpu=cpu, rate=rate, seconds=seconds, sent=sum(sent.values()), send_fail=send_fail,
                      elapsed=elapsed, per=per, rss=rss, ledger=led, latency=sorted(latency),
                      unexpected=srv.unexpected, odd=odd, log=gw.log.read_text(errors="replace"))
        return result
    finally:
        if gw.alive():
            gw.kill9()
        dev.close()
        srv.sock.close()
        shutil.rmtree(work, ignore_errors=True)


def verdict(res):
    """(table text, problems)."""
    lines, problems = [], []
    achieved = res["sent"] / res["elapsed"]
    lines.append(f"load: {res['sent']} datagrams in {res['elapsed']:.1f} s: {achieved:.0f}/s achieved "
                 f"(asked {res['rate']}/s)" + (f", {res['send_fail']} not sent (socket full)" if res["send_fail"] else ""))
    lines.append(f"  {'kind':<18} {'sent':>6}  {'answers':<40} verdict")
    bad_total = 0
    for kind in cb.KINDS:
        c = res["per"].get(kind)
        if not c:
            continue
        bad = sum(v for a, v in c.items() if not cb.allowed(kind, a))
        bad_total += bad
        ans = ", ".join(f"{a} {v}" for a, v in sorted(c.items(), key=lambda kv: -kv[1]))
        ok = "/".join(sorted(cb.KINDS[kind][1]))
        lines.append(f"  {kind:<18} {sum(c.values()):>6}  {ans:<40} {'ok' if not bad else f'{bad} NOT {ok}'}")
        if bad:
            problems.append(f"{kind}: {bad} answer(s) outside {ok}: {dict(c)}")
            for d in res.get("odd", {}).get(kind, []):
                lines.append(f"    unanswered {kind}: {d}")
    lines.append(f"  lwgate CPU: {res['cpu']:.1f} s in {res['elapsed']:.0f} s ({100 * res['cpu'] / res['elapsed']:.0f}% of one core)")
    lat = res["latency"]
    if lat:
        lines.append(f"  answer latency: median {lat[len(lat) // 2] * 1000:.2f} ms, "
                     f"99% {lat[int(len(lat) * 0.99)] * 1000:.2f} ms, max {lat[-1] * 1000:.1f} ms")
    samples = [k for _, k in res["rss"] if k]
    if samples:
        start, peak, end = samples[0], max(samples), samples[-1]
        half = samples[len(samples) // 2 :]
        q2 = samples[len(samples) // 4 : len(samples) // 2] or samples
        lines.append(f"  RSS KiB: start {start}, max {peak}, end {end} "
                     f"(second quarter mean {sum(q2) // len(q2)}, last quarter mean {sum(half[len(half) // 2:]) // max(1, len(half[len(half) // 2:]))})")
        last_q = half[len(half) // 2 :] or samples
        if peak > 64 * 1024:
            problems.append(f"RSS reached {peak} KiB (bound 65536)")
        if sum(last_q) / len(last_q) > sum(q2) / len(q2) + 2048:
            problems.append("RSS still growing in the last quarter (> 2 MiB above the second quarter)")
    led = res["ledger"]
    lines.append(f"  observation meanwhile: {led.expected} values expected, {led.arrived_values} arrived, "
                 f"lost {len(led.lost)}, duplicates {led.duplicate_count}, out of order {len(led.out_of_order)}, "
                 f"timestamps wrong {len(led.time_wrong)}")
    if led.lost or led.out_of_order or led.time_wrong or led.duplicate_count:
        problems.append(f"observation: lost {led.lost[:10]}, out of order {led.out_of_order[:5]}, "
                        f"time wrong {led.time_wrong[:5]}, duplicates {led.duplicates[:5]}")
    if res["unexpected"]:
        lines.append(f"  other datagrams from lwgate: {dict(res['unexpected'])}")
        if res["unexpected"].get("second answer to one request"):
            problems.append("a request answered twice")
    panics = res["log"].count("panicked")
    if panics:
        problems.append(f"{panics} panic(s) in lwgate's log")
    return "\n".join(lines), problems


def main(argv=None):
    ap = argparse.ArgumentParser(prog="scripts/load", description=__doc__)
    ap.add_argument("--rate", type=int, default=1000, help="requests per second (1000)")
    ap.add_argument("--seconds", type=float, default=60.0, help="how long (60)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    print(f"load: {args.rate} req/s for {args.seconds:.0f} s against {lwgate_bin()} "
          f"(bound {args.seconds + 40:.0f} s)", flush=True)
    res = run(args.rate, args.seconds, args.seed)
    text, problems = verdict(res)
    print(text)
    for p in problems:
        print(f"load: FAIL: {p}")
    if not problems:
        print("load: OK")
    return 1 if problems else 0

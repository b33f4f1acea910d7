"""scripts/soak: kill -9 / restart cycles at random moments and network outages of
random length while the server observes a Modbus counter at 1 Hz through /25;
then the ledger (ledger.py) of what arrived. `--power`: the power-cut check
(power.py) instead."""

import argparse
import bisect
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from .common import lwgate_bin
from . import ledger

PATH = "/soak/3300/0/5700"
FAST = "ack_timeout = 1\nmax_retransmit = 1\n"


def plan(cycles, outages, seed, max_run, max_outage):
    """The schedule, fixed by the seed: how long each run lives before its kill -9,
    how long lwgate stays dead, and when each outage starts and how long it lasts
    (seconds from the start of the soak, outages apart from each other)."""
    rng = random.Random(seed)
    runs = [rng.uniform(0.05, max_run) for _ in range(cycles)]
    dead = [rng.uniform(0.0, 0.5) for _ in range(cycles)]
    total = sum(runs) + sum(dead)
    cuts = []
    if outages:
        slot = total / outages
        for i in range(outages):
            length = rng.uniform(1.0, min(max_outage, slot * 0.8))
            start = i * slot + rng.uniform(0.0, slot - length)
            cuts.append((start, length))
    return runs, dead, cuts, total


def main(argv=None):
    ap = argparse.ArgumentParser(prog="scripts/soak", description=__doc__)
    ap.add_argument("--cycles", type=int, default=100, help="kill -9 / restart cycles (100)")
    ap.add_argument("--outages", type=int, default=20, help="network outages (20)")
    ap.add_argument("--seed", type=int, default=None, help="the schedule's seed (random; printed)")
    ap.add_argument("--max-run", type=float, default=6.0, help="longest life of a run before its kill, s (6)")
    ap.add_argument("--max-outage", type=float, default=12.0, help="longest outage, s (12)")
    ap.add_argument("--grace", type=float, default=0.5,
                    help="a value read this close before a kill -9 may be in memory only: not expected (0.5 s)")
    ap.add_argument("--max-duplicates", type=int, default=None,
                    help="allowed duplicate events (default: the run's chances: kills within 150 ms of an ACK, ACKs lost to outages)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, config, database)")
    ap.add_argument("--power", action="store_true", help="the power-cut check under strace instead")
    ap.add_argument("--seconds", type=float, default=40.0, help="--power: length of the traced run (40)")
    args = ap.parse_args(argv)
    if args.power:
        from . import power

        return power.main(args)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    return soak(args.cycles, args.outages, seed, args)


def soak(cycles, outages, seed, args):
    from lwm2m_server import SENML_JSON, TEXT, TestServer
    from aiocoap import Code

    from .counter import CounterDevice, device_file
    from .daemon import EP, Lwgate
    from .wire import Relay

    binary = lwgate_bin()
    runs, dead, cuts, total = plan(cycles, outages, seed, args.max_run, args.max_outage)
    drain_limit = 120.0
    bound = total + cycles * 1.0 + drain_limit + 30
    print(f"soak: {cycles} kill -9 cycles, {outages} outages, seed {seed}, binary {binary}")
    print(f"soak: schedule {total:.0f} s (runs {sum(runs):.0f} s, dead {sum(dead):.0f} s, "
          f"outages {sum(l for _, l in cuts):.0f} s); bound {bound:.0f} s "
          f"(schedule + 1 s per restart + {drain_limit:.0f} s drain + 30 s set-up)", flush=True)
    work = Path(tempfile.mkdtemp(prefix="lwgate-soak."))
    dev = CounterDevice()
    srv = TestServer()
    relay = Relay(srv.port)
    gw = Lwgate(binary, work, relay.uri, FAST)
    (gw.devices / "soak.toml").write_text(device_file(dev.port))
    t_setup = time.monotonic()
    problems = []
    try:
        gw.start()
        srv.wait_registered(EP, 20)
        # Quick retries once the server is gone (Communication Retry Timer, Sequence
        # Delay Timer), as a server that wants its data soon sets them.
        assert srv.write(EP, "/1/0/18", b"1", TEXT).code.is_successful()
        assert srv.write(EP, "/1/0/19", b"2", TEXT).code.is_successful()
        deadline = time.monotonic() + 10
        while srv.read(EP, PATH).code != Code.CONTENT:
            if time.monotonic() > deadline:
                raise RuntimeError("the counter was never polled")
            time.sleep(0.2)
        # Every change notified (pmin 0), no periodic repeats (pmax long).
        r = srv.write_attributes(EP, PATH, "pmin=0", "pmax=3600")
        assert r.code.is_successful(), r
        first, notes, cancel = srv.observe(EP, PATH, accept=SENML_JSON)
        token = first.token
        start_value = dev.value
        dev.start_counting()
        t0 = time.time()
        cutter = threading.Thread(target=_outages, args=(relay, cuts, t0), daemon=True)
        cutter.start()
        life = gw.lives[-1]
        for i in range(cycles):
            _sleep_until(life.started + runs[i])
            gw.kill9()
            if life.how != "kill -9":
                problems.append(f"run {len(gw.lives) - 1} ended by itself: {life.how}")
            time.sleep(dead[i])
            life = gw.start(wait=False)
            if (i + 1) % 10 == 0:
                print(f"soak: {i + 1}/{cycles} kills, {time.time() - t0:.0f} s", flush=True)
        gw.wait_ready()
        cutter.join()
        relay.cut = False
        dev.stop_counting()
        t_drain = time.monotonic()
        last = dev.value
        while True:
            st = gw.status()
            arrived = {v for _, _, _, recs in ledger.notifications(relay.upstream_datagrams(), token) for _, v in recs}
            if st and st["servers"][0]["queued"] == 0 and float(last) in arrived:
                break
            if time.monotonic() - t_drain > drain_limit:
                problems.append(f"not drained after {drain_limit:.0f} s: status {st and st['servers']}")
                break
            time.sleep(0.5)
        drained = time.monotonic() - t_drain
        gw.stop()
        if gw.lives[-1].how != "sigterm":
            problems.append(f"the last run ended: {gw.lives[-1].how}")
        elapsed = time.monotonic() - t_setup
        changes, reads = dev.snapshot()
        lives = [(l.started, l.ended, l.how) for l in gw.lives]
        led = ledger.build(lives, reads, relay.upstream_datagrams(), token, grace=args.grace, after=start_value)
        log = gw.log.read_text(errors="replace")
        panics = log.count("panicked")
        if panics:
            problems.append(f"{panics} panic(s) in the log")
        print(f"\nsoak: {len(gw.lives)} runs ({cycles} killed with -9 at random moments), "
              f"{len(cuts)} outages, {len(changes)} counter values in {elapsed:.0f} s "
              f"(drained in {drained:.1f} s), seed {seed}")
        print(led.table())
        in_window, acks_lost = duplicate_chances(lives, relay.log)
        allowed = args.max_duplicates
        if allowed is None:
            allowed = in_window + acks_lost
        why = explain_duplicates(led.duplicates, lives, relay.log)
        if led.lost:
            problems.append(f"lost values: {led.lost[:20]}")
        if led.out_of_order:
            problems.append(f"out of order: {led.out_of_order[:10]}")
        if led.time_wrong:
            problems.append(f"timestamps wrong: {led.time_wrong[:10]}")
        events = len({w[3] for w in why})
        print(f"  duplicate events (kills or lost ACKs that duplicated records): {events}, "
              f"{events * 100 / max(1, cycles):.0f} a hundred kills (issue 15 measured 4)")
        print(f"  chances: {in_window} kills within 150 ms of an ACK, {acks_lost} ACKs lost to outages")
        if events > allowed:
            problems.append(f"{events} duplicate events, more than the {allowed} chances "
                            f"(kills within 150 ms of an ACK, ACKs lost to an outage)")
        for t, v, cause, _ in why:
            print(f"  duplicate: value {v:g} of {t:.3f}: {cause}")
        unexplained = [w for w in why if w[2] == "UNEXPLAINED"]
        if unexplained:
            problems.append(f"{len(unexplained)} duplicate(s) neither a kill in the deletion window nor a lost ACK")
        if elapsed > bound:
            problems.append(f"took {elapsed:.0f} s, over the {bound:.0f} s bound")
        for p in problems:
            print(f"soak: FAIL: {p}")
        if not problems:
            print(f"soak: OK ({led.duplicate_count} duplicated records from {events} event(s) <= {allowed})")
        return 1 if problems else 0
    except BaseException:
        print(f"soak: aborted; lwgate log tail:\n{gw.tail()}", file=sys.stderr)
        args.keep = True
        raise
    finally:
        if gw.alive():
            gw.kill9()
        relay.close()
        srv.close()
        dev.close()
        if args.keep:
            print(f"soak: work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _outages(relay, cuts, t0):
    for start, length in cuts:
        _sleep_until(t0 + start)
        relay.cut = True
        _sleep_until(t0 + start + length)
        relay.cut = False


def _sleep_until(t):
    left = t - time.time()
    if left > 0:
        time.sleep(left)


def explain_duplicates(dups, lives, relay_log, window=0.15):
    """Why each duplicated record came twice: (time, value, cause, event), cause one of
    "kill -9 N ms after it was delivered" (its ACK came, lwgate died before the
    deferred deletion of the stored row was committed: store/batch.rs defers a
    Dequeue up to 100 ms), "its ACK was lost to an outage" (the notification got
    through, its ACK was dropped, lwgate stored it and replayed it), or
    "UNEXPLAINED"; `event` names the kill or lost ACK (one kill after a replayed
    pack duplicates the whole pack: one event)."""
    from aiocoap import Message

    kills = [end for _, end, how in lives if how == "kill -9" and end]
    out = []
    for t, v, _ in sorted(dups):
        first = None
        for at, way, cut, data in relay_log:
            if way != "c>s" or cut:
                continue
            note = ledger.notifications([(at, data)])
            if note and any(abs(rt - t) < 0.0005 for rt, _ in note[0][3]):
                first = (at, note[0][1])
                break
        cause, event = "UNEXPLAINED", ("?", t)
        if first:
            at, mid = first
            k = next((k for k in kills if 0 <= k - at <= window), None)
            acks = []
            for bt, way, cut, data in relay_log:
                if way == "s>c" and bt >= at:
                    try:
                        m = Message.decode(data)
                    except Exception:  # noqa: BLE001
                        continue
                    if m.mid == mid and m.mtype.name == "ACK":
                        acks.append(cut)
                        break
            if k is not None:
                cause, event = f"kill -9 {(k - at) * 1000:.0f} ms after it was delivered", ("kill", k)
            elif acks and acks[0]:
                cause, event = "its ACK was lost to an outage", ("ack", mid)
        out.append((t, v, cause, event))
    return out


def duplicate_chances(lives, relay_log, window=0.15):
    """How many duplicate events the run allowed: the kills that came within
    `window` of an ACK reaching lwgate (the deletion of the delivered row may not
    be committed yet), plus the ACKs the relay dropped in an outage (the
    notification got through, lwgate never learnt it). Each can duplicate one
    message's records, once."""
    acks, lost = [], set()
    for at, way, cut, data in relay_log:
        if way != "s>c" or len(data) != 4 or data[0] >> 4 & 3 != 2 or data[1] != 0:
            continue  # not an empty ACK
        if cut:
            lost.add(data[2:4])
        else:
            acks.append(at)
    kills = [end for _, end, how in lives if how == "kill -9" and end]
    hit = 0
    for k in kills:
        i = bisect.bisect_right(acks, k)
        if i and k - acks[i - 1] <= window:
            hit += 1
    return hit, len(lost)

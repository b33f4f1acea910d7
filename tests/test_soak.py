"""The short CI versions of scripts/soak and scripts/load (issue 15, items 4 and
5; docs/HARDENING.md), regression tests of the bugs they found (fixed), and the
pure parts of their helpers (scripts/soak_lib): the ledger, the
strace parser and checker, the load's datagrams.

The scripts run as an operator runs them, with the binary the other tests use
(LWGATE_BIN, else target/debug/lwgate) and this Python."""

import os
import random
import shutil
import struct
import subprocess
import sys
import time

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))

from soak_lib import coap_bytes as cb  # noqa: E402
from soak_lib import ledger, trace  # noqa: E402
from soak_lib.soak import duplicate_chances, explain_duplicates, plan  # noqa: E402


def script(lwgate, name, *args, timeout):
    env = {**os.environ, "LWGATE_BIN": str(lwgate), "LWGATE_PYTHON": sys.executable}
    t = time.monotonic()
    r = subprocess.run([str(ROOT / "scripts" / name), *args], capture_output=True, text=True, env=env, timeout=timeout)
    return r, time.monotonic() - t


# ---- the short soak, load and power-cut runs ---------------------------------


def test_soak_10_kills_3_outages_lose_nothing(lwgate):
    r, took = script(lwgate, "soak", "--cycles", "10", "--outages", "3", "--max-run", "4", "--max-outage", "6",
                     timeout=200)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "LOST                " in out and "soak: OK" in out, out
    print(out, f"\n{took:.0f} s")


# Every kind of datagram must be answered as the spec says (the unknown-method and
# marker-without-payload kinds were bugs found by scripts/load, HARDENING.md).
KNOWN_LOAD = ()


def test_load_200_per_second_for_10_s(lwgate):
    r, took = script(lwgate, "load", "--rate", "200", "--seconds", "10", timeout=90)
    out = r.stdout + r.stderr
    fails = [l for l in out.splitlines() if l.startswith("load: FAIL")]
    other = [l for l in fails if not any(l.startswith(f"load: FAIL: {k}:") for k in KNOWN_LOAD)]
    assert "load: 2000 datagrams" in out, out
    assert not other, out
    print(out, f"\n{took:.0f} s")


@pytest.fixture(scope="module")
def traced(lwgate, tmp_path_factory):
    """One short run under strace (scripts/soak --power's scenario), checked."""
    if shutil.which("strace") is None:
        msg = "strace is missing (apt-get install strace)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    from soak_lib import power

    work = tmp_path_factory.mktemp("power")
    out, facts, gw = power.run_traced(20.0, work, binary=lwgate)
    calls = trace.parse(out.open(errors="replace"))
    chk = trace.check(calls, power.server_port_of(calls))
    print(power.report(chk))
    return chk


def test_power_cut_notifications_and_writes_are_synced_before_they_are_acknowledged(traced):
    assert traced.records >= 8 and traced.writes >= 3 and traced.attributes >= 1, traced
    assert traced.stored >= 1, "stored ones replayed"
    bad = [v for v in traced.violations if not v.what.startswith("observe")]
    assert not bad, bad[:5]


def test_power_cut_an_observation_is_synced_before_its_first_answer(traced):
    assert traced.observes >= 1, traced
    assert not [v for v in traced.violations if v.what.startswith("observe")]


# ---- the bugs, one test each ---------------------------------------------------


def test_an_observation_answered_survives_kill_9_right_after(lwgate, tmp_path):
    from lwm2m_server import SENML_JSON, TestServer
    from aiocoap import Code

    from soak_lib.counter import CounterDevice, device_file
    from soak_lib.daemon import EP, Lwgate

    dev = CounterDevice()
    srv = TestServer()
    gw = Lwgate(lwgate, tmp_path, srv.uri)
    (gw.devices / "soak.toml").write_text(device_file(dev.port))
    try:
        gw.start()
        srv.wait_registered(EP, 20)
        deadline = time.monotonic() + 10
        while srv.read(EP, "/soak/3300/0/5700").code != Code.CONTENT:
            assert time.monotonic() < deadline, "never polled"
            time.sleep(0.1)
        assert srv.write_attributes(EP, "/soak/3300/0/5700", "pmin=0", "pmax=3600").code.is_successful()
        time.sleep(0.3)  # the attributes' commit is behind us: nothing urgent pending
        first, notes, cancel = srv.observe(EP, "/soak/3300/0/5700", accept=SENML_JSON)
        gw.kill9()  # a few ms after the 2.05 left lwgate
        assert first.code == Code.CONTENT
        restarted = time.monotonic()
        gw.start()
        dev.start_counting()

        # Counted off the wire: the restarted lwgate sends from a new port, and
        # aiocoap matches notifications by address too (it answers them with a
        # Reset, which ends the observation); an LwM2M server goes by the token
        # and the registration the Update moved to the new address.
        def notified():
            from aiocoap import Message

            n = 0
            for t, _, data in list(srv.wire):
                try:
                    m = Message.decode(data)
                except Exception:
                    continue
                n += t >= restarted and m.token == first.token and m.opt.observe is not None
            return n >= 1

        srv.wait_for(notified, 8, "a notification of the observation the server holds")
    finally:
        gw.kill9()
        srv.close()
        dev.close()


def _raw_registered(lwgate, tmp_path):
    from lwm2m_server import RawServer

    from soak_lib.daemon import Lwgate

    raw = RawServer()
    gw = Lwgate(lwgate, tmp_path, raw.uri)
    gw.start()
    raw.accept_registration()
    return raw, gw


@pytest.mark.parametrize("code", [0x1F, 0x08, 0x34], ids=["0.31", "0.08", "1.20"])
def test_an_unknown_method_gets_an_answer(lwgate, tmp_path, code):
    raw, gw = _raw_registered(lwgate, tmp_path)
    try:
        reply = raw.exchange(cb.request(cb.CON, 0x2345, b"\x01\x02", "/3/0", code=code), timeout=2)
        assert reply is not None, "no answer at all to a CON"
        m = cb.parse(reply)
        assert m[2] == 0x2345 and (m[0] == cb.RST or m[1] == "4.05"), m
    finally:
        gw.kill9()
        raw.close()


def test_a_payload_marker_without_payload_is_a_format_error(lwgate, tmp_path):
    raw, gw = _raw_registered(lwgate, tmp_path)
    try:
        reply = raw.exchange(cb.request(cb.CON, 0x2346, b"\x03", "/3/0/0") + b"\xff", timeout=2)
        assert reply is not None
        m = cb.parse(reply)
        assert m[2] == 0x2346 and (m[0] == cb.RST or m[1] == "4.00"), m
    finally:
        gw.kill9()
        raw.close()


# ---- the pure parts ----------------------------------------------------------


def _note(mid, obs, recs, token=b"T", con=True):
    import json

    payload = json.dumps([{"n": "/soak/3300/0/5700", "bt": t, "v": v} for t, v in recs]).encode()
    return cb.header(cb.CON if con else cb.NON, 0x45, mid, token) + cb.options([(cb.OBSERVE, cb.uint(obs))]) + b"\xff" + payload


def test_ledger_counts_lost_duplicates_rereadings_and_order():
    lives = [(0.0, 10.0, "kill -9"), (10.5, 20.0, "sigterm")]
    reads = [(1.0, 1), (1.2, 1), (2.0, 2), (3.0, 3), (9.8, 9), (11.0, 9), (12.0, 10), (13.0, 11)]
    dgrams = [
        (1.01, _note(1, 1, [(1.0, 1)])),
        (1.02, _note(1, 1, [(1.0, 1)])),  # a retransmission: folded
        (2.01, _note(2, 2, [(2.0, 2)])),
        (9.85, _note(3, 3, [(9.8, 9)])),  # read 0.2 s before the kill, got out
        (11.1, _note(7, 9, [(1.0, 1), (11.0, 9)])),  # a replay: 1 again (duplicate)
        (12.01, _note(8, 10, [(12.0, 10)])),
        (12.02, _note(9, 11, [(3.0, 3)])),  # late: out of order
        (13.01, _note(10, 12, [(13.5, 11)])),  # 0.5 s off its reading
        (13.02, _note(11, 13, [(13.0, 11)], token=b"X")),  # another observation: not counted
    ]
    led = ledger.build(lives, reads, dgrams, token=b"T", grace=0.5, tol=0.3)
    assert led.messages == 7 and led.records == 8
    assert led.lost == [], led.lost
    assert led.duplicate_count == 1 and led.duplicates == [(1.0, 1.0, 2)]
    assert led.out_of_order == [(3.0, 3.0)]
    assert led.time_wrong == [(13.5, 11.0)]
    assert led.rereadings == 1  # 9, read by both runs, arrived with each run's time
    assert led.at_risk == 0 and led.expected == 6  # 9 was at risk in the first run, read again in the second
    led = ledger.build(lives, reads, dgrams[:3], token=b"T")
    assert led.lost == [3, 9, 10, 11]


def test_plan_is_fixed_by_its_seed_and_keeps_outages_apart():
    a = plan(100, 20, 7, 6.0, 12.0)
    assert a == plan(100, 20, 7, 6.0, 12.0)
    runs, dead, cuts, total = a
    assert len(runs) == 100 and all(0.05 <= r <= 6.0 for r in runs) and len(cuts) == 20
    ends = [s + l for s, l in cuts]
    assert all(e <= s2 for e, (s2, _) in zip(ends, cuts[1:])) and ends[-1] <= total


def test_duplicates_are_explained_by_a_kill_after_an_ack_or_a_lost_ack():
    note = _note(0x100, 5, [(9.99, 7)])
    again = _note(0x200, 9, [(9.99, 7)])
    ack = cb.header(cb.ACK, 0, 0x100)
    log = [
        (9.99, "c>s", False, note),
        (10.0, "s>c", False, ack),  # delivered; the kill 50 ms later finds the row still there
        (11.0, "c>s", False, again),
        (20.0, "s>c", True, cb.header(cb.ACK, 0, 0x300)),  # an ACK dropped by an outage
    ]
    lives = [(0.0, 10.05, "kill -9"), (10.1, 15.0, "kill -9"), (15.1, 30.0, "sigterm")]
    assert duplicate_chances(lives, log) == (1, 1)
    why = explain_duplicates([(9.99, 7.0, 2)], lives, log)
    assert why == [(9.99, 7.0, "kill -9 60 ms after it was delivered", ("kill", 10.05))], why
    lives[0] = (0.0, 10.5, "kill -9")
    assert explain_duplicates([(9.99, 7.0, 2)], lives, log)[0][2] == "UNEXPLAINED"


def _strace_line(pid, t, call, dur):
    return f"{pid} {t:.6f} {call} <{dur:.6f}>\n"


def _hex(b):
    return "".join(f"\\x{c:02x}" for c in b)


def _wal(path="/d/state.db-wal"):
    return "12<" + _hex(path.encode()) + ">"


def test_trace_parser_and_checker_on_a_made_up_trace():
    """A notification whose record (its time as an 8-byte REAL in a WAL page) was
    committed and synced before it left passes; one sent before the sync fails;
    a write answered before its commit fails, and after passes."""
    t_rec = 1790000000.25
    page = bytearray(4096)
    page[100:108] = struct.pack(">d", t_rec)
    hdr = lambda commit: struct.pack(">II", 2, commit) + bytes(16)  # noqa: E731
    sock = "9<UDP:[127.0.0.1:40000->127.0.0.1:5683]>"
    note = _note(5, 3, [(t_rec, 7)])
    write = cb.request(cb.CON, 0x77, b"\x01", "/1/0/3", code=3, extra=[(cb.CONTENT_FORMAT, b"")]) + b"\xff" + b"1280770049"
    # The written value as the instance's SenML CBOR holds it: 0x1a + 4 bytes.
    page2 = bytearray(4096)
    page2[10:15] = b"\x1a" + (1280770049).to_bytes(4, "big")
    ack = cb.header(cb.ACK, 0x44, 0x77, b"\x01")
    good = [
        _strace_line(1, 10.0, f'pwrite64({_wal()}, "{_hex(hdr(0))}", 24, 32) = 24', 0.00001),
        _strace_line(1, 10.1, f'pwrite64({_wal()}, "{_hex(page)}", 4096, 56) = 4096', 0.00001),
        _strace_line(1, 10.2, f'pwrite64({_wal()}, "{_hex(hdr(3))}", 24, 4152) = 24', 0.00001),
        _strace_line(1, 10.3, f'pwrite64({_wal()}, "{_hex(bytes(4096))}", 4096, 4176) = 4096', 0.00001),
        f"1 10.400000 fsync({_wal()} <unfinished ...>\n",
        _strace_line(2, 10.45, 'write(2<pipe:[1]>, "\\x41", 1) = 1', 0.00001),
        "1 10.500000 <... fsync resumed>) = 0 <0.100000>\n",
        _strace_line(1, 10.6, f'sendto({sock}, "{_hex(note)}", {len(note)}, 0, NULL, 0) = {len(note)}', 0.00001),
        _strace_line(1, 11.0, f'recvfrom({sock}, "{_hex(write)}", 65536, 0, NULL, NULL) = {len(write)}', 0.00001),
        _strace_line(1, 11.1, f'pwrite64({_wal()}, "{_hex(hdr(3))}", 24, 8272) = 24', 0.00001),
        _strace_line(1, 11.2, f'pwrite64({_wal()}, "{_hex(page2)}", 4096, 8296) = 4096', 0.00001),
        _strace_line(1, 11.3, f'fdatasync({_wal()}) = 0', 0.001),
        _strace_line(1, 11.4, f'sendto({sock}, "{_hex(ack)}", {len(ack)}, 0, NULL, 0) = {len(ack)}', 0.00001),
    ]
    calls = trace.parse(good)
    assert [c.name for c in calls][:5] == ["pwrite64"] * 4 + ["fsync"]
    fs = calls[4]
    assert (fs.start, round(fs.end, 6), fs.target) == (10.4, 10.5, "/d/state.db-wal")
    chk = trace.check(calls, 5683)
    assert chk.ok(), chk.violations
    assert (chk.notifications, chk.records, chk.writes) == (1, 1, 1)
    assert chk.sync_name == {"fsync", "fdatasync"}
    # The datagram before the sync, and the ACK before the write's commit: both caught.
    bad = good[:4] + [good[7].replace("10.600000", "10.350000")] + good[4:7] + good[8:9] + [good[12].replace("11.400000", "11.150000")] + good[9:12]
    chk = trace.check(trace.parse(bad), 5683)
    assert [v.what.split(" ")[0] for v in chk.violations] == ["notification", "write"], chk.violations


def test_the_power_cut_keeps_exactly_the_synced_writes():
    from soak_lib.cut import Files

    def call(name, start, end, data=b"", offset=None, target="/d/state.db-wal"):
        return trace.Call(1, start, end, name, 12, target, data, len(data) if data else 0, offset)

    calls = [
        call("pwrite64", 1.0, 1.1, b"AAAA", 0),
        call("fsync", 1.2, 1.5),
        call("pwrite64", 1.6, 1.7, b"BB", 2),
        call("pwrite64", 1.8, 1.9, b"CC", 0, target="/d/state.db"),
        call("fdatasync", 2.0, 2.2, target="/d/state.db"),
    ]
    f = Files(calls, "/d/state.db")
    f.advance(1.4)
    assert f.content == {}, "a sync not finished by the cut makes nothing durable"
    f.advance(1.5)
    assert f.content == {"/d/state.db-wal": bytearray(b"AAAA")}
    f.advance(3.0)
    assert f.content["/d/state.db-wal"] == bytearray(b"AAAA"), "never synced: lost"
    assert f.content["/d/state.db"] == bytearray(b"CC")


def test_load_datagrams_are_what_they_say():
    from aiocoap import Message

    rng = random.Random(5)
    for kind in cb.KINDS:
        d = cb.make(kind, 0x1234, b"ABCDEFGH", rng)
        if kind in ("read", "read-non", "discover", "bad-path", "critical-option"):
            m = Message.decode(d)  # an independent decoder takes them
            assert m.mid == 0x1234 and m.token == b"ABCDEFGH"
            assert (m.mtype.name == "NON") == (kind == "read-non")
        if kind in ("truncated-option", "delta-15", "short-header", "bad-version"):
            with pytest.raises(Exception):
                Message.decode(d)
    m = cb.parse(cb.request(cb.CON, 9, b"\x07", "/soak/3300", cb.LINK))
    assert m[:4] == (cb.CON, "0.01", 9, b"\x07") and m[4][cb.URI_PATH] == [b"soak", b"3300"] and m[4][cb.ACCEPT] == [b"\x28"]
    assert cb.allowed("bad-path", "4.04") and not cb.allowed("bad-path", "2.05")
    assert cb.allowed("garbage", "RST") and not cb.allowed("garbage", "none")
    assert cb.allowed("tkl-9-non", "none") and not cb.allowed("tkl-9", "none")

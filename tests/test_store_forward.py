"""Notification storing (/1/x/6) as an operator meets it: the server becomes
unreachable (a relay drops every datagram), lwgate is killed with -9 in the middle
and restarted, traffic comes back. Every value generated while lwgate ran reaches
the server, in order, with its original timestamp."""

import gc
import json
import signal
import time

import pytest
from aiocoap import Code

from relay import Relay
from test_core import EP, server_table
from lwm2m_server import SENML_JSON, TEXT, TestServer

FAST = "ack_timeout = 1\nmax_retransmit = 1\n"


@pytest.fixture
def setup(agent):
    made = []

    def make(store=""):
        srv = TestServer()
        relay = Relay(srv.port)
        a = agent(store=store, servers=server_table(relay.uri, lifetime=300, extra=FAST))
        made.append((srv, relay))
        a.start()
        srv.wait_registered(EP)
        # Quick retries once the server is gone (1.1 Communication Retry Timer and
        # Sequence Delay Timer): written by the server, kept across restarts.
        assert srv.write(EP, "/1/0/18", b"1", TEXT).code.is_successful()
        assert srv.write(EP, "/1/0/19", b"2", TEXT).code.is_successful()
        assert srv.write_attributes(EP, "/3/0/13", "pmin=1", "pmax=1").code.is_successful()
        first, notes, cancel = srv.observe(EP, "/3/0/13", accept=SENML_JSON)
        srv.wait_for(lambda: len(notes) >= 3, 15, "three live notifications")
        # The test server must keep its observation alive however long the test
        # runs (aiocoap holds it weakly): collect now, so a regression shows at once.
        gc.collect()
        # From here on, count what reaches the server on the wire: aiocoap hides
        # notifications it judges reordered (RFC 7641 3.4), and the wire is what
        # "reaches the server" means. Its observe numbers are checked separately.
        return a, srv, relay, relay.notifications

    yield make
    for srv, relay in made:
        relay.close()
        srv.close()


def records(notes):
    """(time, value) of every SenML record received, in arrival order. `notes` are
    aiocoap notifications or (observe, payload) pairs recorded on the wire."""
    out = []
    for n in list(notes):
        if isinstance(n, Exception):
            continue
        if isinstance(n, tuple) and n[0] == 0:
            continue  # the response that started the observation carries no time
        payload = n[1] if isinstance(n, tuple) else n.payload
        recs = json.loads(payload)
        bt = 0.0
        for r in recs:
            bt = r.get("bt", bt)
            out.append((round(bt + r.get("t", 0.0), 3), r["v"]))
    return out


def wait_drained(a, srv, notes, after, timeout=60, relay=None, before=""):
    try:
        srv.wait_for(
            lambda: any(t > after for t, _ in records(notes)) and a.status_json()["servers"][0]["queued"] == 0,
            timeout,
            "stored notifications replayed and live ones flowing again",
        )
    except AssertionError as e:
        raise AssertionError(
            f"{e}\nstatus: {a.status_json()['servers']}\nlast records: {records(notes)[-5:]}"
            f"\nnotes: {len(notes)}\nlog before the restart:\n{before[-3000:]}"
            f"\nlog:\n{a.log.read_text()[-6000:]}"
            f"\nrelay:\n{relay.dump(after - 20) if relay else ''}"
        ) from None


# Killed 6 s into the outage (lwgate already knows the server is gone and stores),
# or 2 s in (notifications still in flight, retransmitted, not yet given up on:
# they were written to disk before they were sent).
@pytest.mark.parametrize("kill_after", [6.0, 2.0], ids=["after-detection", "in-flight"])
def test_outage_and_kill_9_lose_nothing(setup, kill_after):
    a, srv, relay, notes = setup()
    relay.drop = True
    t_drop = time.time()
    time.sleep(kill_after)
    st = a.status_json()["servers"][0]
    assert st["queued"] > 0, (st, a.log.read_text()[-3000:])
    before = a.log.read_text()
    a.kill()
    t_kill = time.time()
    a.start()
    t_up = time.time()
    time.sleep(11 - kill_after)
    assert a.status_json()["servers"][0]["queued"] > 0, "stored across kill -9 and still storing"
    relay.drop = False
    t_back = time.time()
    wait_drained(a, srv, notes, t_back + 1, relay=relay, before=before)
    recs = records(notes)
    times = [t for t, _ in recs]
    dupes = len(times) - len(set(times))
    seen = []
    for t in times:
        if t not in seen:
            seen.append(t)
    assert seen == sorted(seen), f"out of order: {seen}"
    # Each record carries the time it was generated; /3/0/13 is the clock as last
    # sampled (once a second, in whole seconds), so it trails that time a little.
    assert all(0 <= t - v < 2.5 for t, v in recs), [r for r in recs if not 0 <= r[0] - r[1] < 2.5]
    during_outage = [t for t in seen if t_drop < t < t_back]
    assert len(during_outage) >= 8, f"outage values delivered: {during_outage}"
    gaps = [(a_, b) for a_, b in zip(seen, seen[1:]) if b - a_ > 1.6]
    # One gap only: the seconds lwgate was not running. The last value before it was
    # generated in the second before the kill, the first after it in the second
    # after the restart (t_up is when the restarted agent answered).
    assert len(gaps) <= 1, (gaps, t_kill, t_up)
    for last, first in gaps:
        assert t_kill - 1.6 < last < t_kill and t_kill < first < t_up + 1.6, (last - t_kill, first - t_up)
    st = a.status_json()["servers"][0]
    assert st["dropped"] == 0 and st["last_delivery"] is not None
    assert dupes <= 1, f"{dupes} duplicate records (only an ACK lost at the cut may cause one)"
    # Observe numbers keep increasing across the kill -9 (RFC 7641 freshness).
    seqs = [o for o, _ in notes if o != 0]
    steps = [b - a_ for a_, b in zip(seqs, seqs[1:])]
    assert all(0 < s < 1 << 23 or s == 0 for s in steps), seqs
    assert a.stop(signal.SIGTERM) == 0


def test_queue_cap_drops_oldest_and_counts(setup):
    a, srv, relay, notes = setup(store="queue_cap = 3")
    relay.drop = True
    t_drop = time.time()
    time.sleep(9)
    relay.drop = False
    t_back = time.time()
    wait_drained(a, srv, notes, t_back + 1, relay=relay)
    st = a.status_json()["servers"][0]
    assert st["dropped"] >= 3, st
    after = sorted({t for t, _ in records(notes) if t > t_drop + 0.5})
    # The oldest went first, and the counter is right: one value a second was
    # generated, so the first survivor comes `dropped` seconds into the outage.
    assert abs((after[0] - t_drop) - st["dropped"]) < 2.5, (after[:5], t_drop, st["dropped"])
    assert all(b - a_ < 1.6 for a_, b in zip(after, after[1:])), after
    assert a.stop() == 0


def test_queue_mode_sleeps_and_wakes_to_deliver(agent):
    srv = TestServer()
    try:
        a = agent(servers=server_table(srv.uri, lifetime=300, extra='binding = "UQ"\nqueue_timeout = 2\n')).start()
        reg = srv.wait_registered(EP)
        assert reg.query.get("Q") == "" and reg.query["b"] == "U", reg.query
        assert srv.write_attributes(EP, "/3/0/13", "pmin=5", "pmax=5").code.is_successful()
        first, notes, cancel = srv.observe(EP, "/3/0/13", accept=SENML_JSON)
        srv.wait_for(lambda: "asleep" in a.status_json()["servers"][0]["state"], 10, "queue mode sleep")
        updates = len(reg.updates)
        # Asleep: a request gets no answer at all until the agent wakes: no response,
        # no Reset, no error (a Reset would tell the server to drop the request).
        srv.no_answer(EP, Code.GET, "/1/0/1", 1.5, accept=TEXT)
        assert "asleep" in a.status_json()["servers"][0]["state"] and len(reg.updates) == updates, (
            "asleep all the while", a.status_json()["servers"][0], reg.updates)
        # The next wake-up (the pmax notification) starts with an Update; the agent
        # then listens again for queue_timeout, and a request gets its real answer.
        srv.wait_for(lambda: len(reg.updates) > updates, 10, "the wake-up Update")
        try:
            r = srv.read(EP, "/1/0/1", accept=TEXT, timeout=5)
        except TimeoutError:
            raise AssertionError(f"no answer after the wake-up Update; log:\n{a.log.read_text()[-3000:]}") from None
        assert (r.code, r.opt.content_format, r.payload) == (Code.CONTENT, TEXT, b"300"), (r.code, r.payload)
        srv.wait_for(lambda: len(notes) >= 2, 20, "notifications after wake-ups")
        assert len(reg.updates) > updates, "each wake-up starts with an Update"
        times = [t for t, _ in records(notes)]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert a.stop() == 0
    finally:
        srv.close()

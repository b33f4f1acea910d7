"""What a field engineer reads when something is wrong: the reason for each kind of
failure in the journal (here: the agent's stderr) and in `lwgate status`, the CoAP
message trace at debug level (free of keys), and values sent with the time they
are of."""

import base64
import math
import time

import cbor2
from aiocoap import Code, Message
from aiocoap.numbers.types import Type

from conftest import wait_for
from lwm2m_formats import tlv_encode
from lwm2m_server import SENML_CBOR, TLV, RawServer, TestServer, _free_udp_port
from test_core import server_table
from relay import Relay

EP = "test-gw"


def log_lines(a, word):
    return [line for line in a.log.read_text().splitlines() if word in line]


def test_a_refused_port_is_reported_at_once_and_once(agent):
    port = _free_udp_port()
    a = agent(servers=server_table(f"coap://127.0.0.1:{port}")).start()
    # Status names the reason within a second, not "no answer" 93 s later.
    srv = wait_for(lambda: (a.status_json()["servers"][0].get("last_error") or "") and a.status_json()["servers"][0], 3, "a reason")
    assert "refused" in srv["last_error"] and f"nothing listens on UDP port {port}" in srv["last_error"], srv
    # The first retransmission (after 2-3 s) is refused again: still one WARN.
    wait_for(lambda: len(log_lines(a, "CON POST")) >= 2, 6, "a retransmitted Register")
    time.sleep(0.3)
    warns = [line for line in log_lines(a, "refused the datagram") if "WARN" in line]
    assert len(warns) == 1, warns
    # Stopping does not wait for an answer that cannot come, and claims no de-registration.
    t0 = time.monotonic()
    assert a.stop() == 0
    assert time.monotonic() - t0 < 2.0
    assert not log_lines(a, "de-registering"), a.log.read_text()


def test_an_unresolvable_host_follows_the_back_off(agent):
    a = agent(servers=server_table("coap://no-such-host.invalid:5683")).start()
    srv = wait_for(lambda: (a.status_json()["servers"][0].get("last_error") or "") and a.status_json()["servers"][0], 3, "a reason")
    assert "cannot resolve no-such-host.invalid" in srv["last_error"], srv
    assert srv["state"].startswith("retrying in"), srv
    # Attempts at 0 s and 10 s (back-off 10 s, then 20 s): two look-ups in 15 s, not
    # one every 10 s for ever, and never "no answer" since nothing was sent.
    wait_for(lambda: len(log_lines(a, "registration failed")) >= 2, 14, "the second attempt")
    time.sleep(3)
    fails = log_lines(a, "registration failed")
    assert len(fails) == 2, fails
    assert all("cannot resolve no-such-host.invalid" in f for f in fails), fails
    assert "retrying in 10s" in fails[0] and "retrying in 20s" in fails[1], fails
    assert not log_lines(a, "no answer"), a.log.read_text()
    assert not log_lines(a, "CON POST"), "nothing is sent without an address"
    assert a.stop() == 0


def registered_raw(agent):
    raw = RawServer()
    a = agent(servers=server_table(raw.uri)).start()
    raw.accept_registration()
    wait_for(lambda: a.status_json()["servers"][0]["state"] == "registered", 5, "registered")
    return a, raw


def test_a_vanished_server_at_shutdown_is_said(agent):
    a, raw = registered_raw(agent)
    raw.close()  # the server is gone: its port is closed
    t0 = time.monotonic()
    assert a.stop() == 0
    assert time.monotonic() - t0 < 3.0, "the refused De-register is not waited for"
    warn = log_lines(a, "De-register of /rd/raw not answered")
    assert len(warn) == 1 and "refused" in warn[0], a.log.read_text()


def test_a_silent_server_at_shutdown_is_said(agent):
    a, raw = registered_raw(agent)
    # The server stays, but answers nothing (a dead link): the 5 s deadline ends it.
    assert a.stop() == 0
    m = raw.recv_message(2)
    assert m.code == Code.DELETE and list(m.opt.uri_path) == ["rd", "raw"]
    warn = log_lines(a, "no answer to the De-register of /rd/raw before the shutdown deadline")
    assert len(warn) == 1, a.log.read_text()
    raw.close()


def test_a_register_accepted_as_sigterm_arrives_is_deregistered(agent):
    raw = RawServer()
    a = agent(servers=server_table(raw.uri)).start()
    m = raw.recv_message(10)
    assert m.code == Code.POST and list(m.opt.uri_path) == ["rd"]
    # SIGTERM is handled before the server's 2.01 arrives.
    a.proc.send_signal(15)
    wait_for(lambda: log_lines(a, "SIGTERM"), 3, "SIGTERM handled")
    raw.send(Message(mtype=Type.ACK, mid=m.mid, token=m.token, code=Code.CREATED, location_path=["rd", "late"]).encode())
    d = raw.recv_message(3)
    while d.mtype != Type.CON:  # skip a retransmitted Register's duplicate, if any
        d = raw.recv_message(3)
    assert d.code == Code.DELETE and list(d.opt.uri_path) == ["rd", "late"], d
    raw.send(Message(mtype=Type.ACK, mid=d.mid, token=d.token, code=Code.DELETED).encode())
    assert a.proc.wait(5) == 0
    raw.close()


def test_the_message_trace_at_debug(agent):
    a, raw = registered_raw(agent)
    port = raw.port
    lines = log_lines(a, f"127.0.0.1:{port}")
    out = [line for line in lines if "→" in line and "CON POST" in line]
    assert out and "/rd?ep=test-gw&lt=300&lwm2m=1.1&b=U cf=40 size=" in out[0], lines
    assert "token=" in out[0] and "mid=0x" in out[0]
    inn = [line for line in lines if "←" in line and "ACK 2.01" in line]
    assert inn and "location=/rd/raw size=0" in inn[0], lines
    # A Read: request in, response out, with content format and Observe.
    req = raw.request(Code.GET, "/3/0/0", observe=0)
    req.opt.accept = SENML_CBOR
    resp = Message.decode(raw.exchange(req.encode()))
    assert resp.code == Code.CONTENT
    time.sleep(0.2)
    lines = log_lines(a, f"127.0.0.1:{port}")
    assert any("←" in line and f"CON GET mid={req.mid:#06x}" in line and "/3/0/0 accept=112 observe=0" in line for line in lines), lines
    assert any("→" in line and "ACK 2.05" in line and "cf=112 observe=" in line for line in lines), lines
    # Payloads only at trace level.
    assert not log_lines(a, "payload "), "payloads at debug"
    assert a.stop() == 0
    raw.close()


def test_the_trace_never_shows_security_keys(agent):
    bs, dm = TestServer(), TestServer()
    try:
        secret = b"\x13\x37TOP-SECRET-PSK\x00\xff"
        identity = b"psk-identity-of-gw"
        a = agent(extra=f'[bootstrap.server]\nuri = "{bs.uri}"\n', servers="")
        a.start(env={"RUST_LOG": "lwgate=debug,lwgate::coap=trace"})
        bs.wait_for(lambda: EP in bs.bs_clients, 20, "Bootstrap-Request")
        sec = tlv_encode(0, 1, tlv_encode(3, 0, dm.uri.encode()) + tlv_encode(3, 1, b"\x00") + tlv_encode(3, 2, b"\x03")
                         + tlv_encode(3, 3, identity) + tlv_encode(3, 5, secret) + tlv_encode(3, 10, b"\x7b"))
        assert bs.bs(EP, Code.PUT, "/0", sec, content_format=TLV).code == Code.CHANGED
        assert bs.bs(EP, Code.GET, "/3/0/0", accept=TLV).code in (Code.CONTENT, Code.BAD_REQUEST, Code.METHOD_NOT_ALLOWED)
        time.sleep(0.3)
        log = a.log.read_bytes()
        assert b"CON PUT" in log and b"/0 cf=11542" in log, "the write itself is traced"
        assert b"not shown: they may hold Security object keys" in log
        assert b"payload " in log, "payloads are traced at trace level"
        for form in (secret, secret.hex().encode(), base64.b64encode(secret), identity, identity.hex().encode(), b"TOP-SECRET"):
            assert form not in log, form
        a.stop()
    finally:
        bs.close()
        dm.close()


def test_values_sent_are_of_the_time_they_are_sent(agent):
    srv = TestServer()
    # Through a relay: after the restart the agent's new socket has a new port, and
    # the relay keeps the one address the server's observation knows.
    relay = Relay(srv.port)
    try:
        a = agent(servers=server_table(relay.uri, lifetime=300)).start()
        srv.wait_registered(EP, 15)
        assert srv.write_attributes(EP, "/3/0/13", "pmin=1", "pmax=1").code == Code.CHANGED
        first, notes, cancel = srv.observe(EP, "/3/0/13", accept=SENML_CBOR)
        assert first.code == Code.CONTENT
        wait_for(lambda: len(relay.notifications) >= 12, 20, "12 notifications")
        # Across a crash and restart too (the observation is resumed).
        a.kill()
        a.start()
        n0 = len(relay.notifications)
        wait_for(lambda: len(relay.notifications) >= n0 + 8, 25, "8 notifications after the restart")
        cancel()
        timed = [cbor2.loads(p)[0] for _, p in relay.notifications[1:]]
        assert len(timed) >= 19 and all(-3 in r for r in timed), timed
        for rec in timed:
            v, bt = rec[2], rec[-3]
            # Current Time at time t is t (whole seconds), not a reading of ≥1 s before.
            assert v == math.floor(bt), f"value {v} sent with time {bt}"
        a.stop()
    finally:
        relay.close()
        srv.close()


def test_a_state_database_that_cannot_be_used_is_said_once_with_a_fix(agent, tmp_path):
    db = tmp_path / "state" / "state.db"
    cases = [
        (lambda: db.mkdir(parents=True), "it is a directory; [store] path must name the database file itself"),
        (lambda: (db.rmdir(), db.write_bytes(b"not a database, just text " * 40)), "the file is not an SQLite database"),
    ]
    for make, hint in cases:
        make()
        a = agent(servers=server_table("coap://127.0.0.1:5683"))
        a.start(wait=False)
        assert a.proc.wait(10) == 1
        a.logf.close()
        log = a.log.read_text()
        assert log.count("cannot open the state database") == 1, log
        assert log.count(hint) == 1, log
        assert str(db) in log and "Error code" not in log, log


def test_send_says_which_server_and_what_is_wrong(agent):
    port = _free_udp_port()
    a = agent(servers=server_table(f"coap://127.0.0.1:{port}")).start()
    cfg = ["--config", str(a.config)]
    r = a.cli("send", "--help")
    assert "[default: 0]" not in r.stdout and "default: the first server" in r.stdout, r.stdout
    r = a.cli("send", *cfg, "--server", "0", "/3/0/13", check=False)
    assert r.returncode == 2 and "1..=65534" in r.stderr, r.stderr
    r = a.cli("send", *cfg, "--server", "7", "/3/0/13", check=False)
    assert r.returncode == 1 and "no server with Short Server ID 7 (servers: 101)" in r.stderr, r.stderr
    r = a.cli("send", *cfg, "/3/0/999", check=False)
    assert r.returncode == 1 and "/3/0/999: no such object, instance or resource" in r.stderr, r.stderr
    r = a.cli("send", *cfg, "/0/0/5", check=False)
    assert r.returncode == 1 and "the Security object is never sent" in r.stderr, r.stderr
    r = a.cli("send", *cfg, "/3/0/13", check=False)
    assert r.returncode == 1, r.stderr
    assert f"server 101 (coap://127.0.0.1:{port}) is not registered (registering" in r.stderr, r.stderr
    assert "refused" in r.stderr, r.stderr
    a.stop()


def test_a_device_without_its_protocol_table_is_named(agent):
    a = agent(servers=server_table("coap://127.0.0.1:5683"))
    (a.devices / "sensor.toml").write_text('[device]\nid = "sensor"\nprotocol = "mqtt"\n')
    r = a.cli("check-config", "--config", str(a.config), check=False)
    assert r.returncode == 1
    assert f"{a.devices / 'sensor.toml'}: mqtt: expected a [mqtt] table for a mqtt device" in r.stderr, r.stderr

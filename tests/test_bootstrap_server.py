"""Client-initiated bootstrap against a bootstrap server on aiocoap: Delete "/",
Bootstrap-Write in each format, Discover, Read, Finish; an inconsistent
configuration refused with 4.06; a bootstrap that never finishes times out."""

import json
import os
import time
from pathlib import Path

import aiocoap.error
import cbor2
import pytest
from aiocoap import Code

from lwm2m_formats import links, tlv_encode
from lwm2m_server import LINK, LWM2M_JSON, SENML_CBOR, SENML_JSON, TLV, TestServer

EP = "test-gw"


def _int(v):
    return v.to_bytes(1 if v < 128 else 2, "big")


def security_payload(fmt, uri, ssid, inst=1):
    if fmt == TLV:
        body = (tlv_encode(3, 0, uri.encode()) + tlv_encode(3, 1, b"\x00") + tlv_encode(3, 2, b"\x03")
                + tlv_encode(3, 10, _int(ssid)))
        return tlv_encode(0, inst, body)
    recs = [("0", "vs", uri), ("1", "vb", False), ("2", "v", 3), ("10", "v", ssid)]
    if fmt == SENML_JSON:
        return json.dumps([{"bn": f"/0/{inst}/", "n": n, k: v} if i == 0 else {"n": n, k: v}
                           for i, (n, k, v) in enumerate(recs)]).encode()
    if fmt == SENML_CBOR:
        keys = {"vs": 3, "vb": 4, "v": 2}
        return cbor2.dumps([{**({-2: f"/0/{inst}/"} if i == 0 else {}), 0: n, keys[k]: v} for i, (n, k, v) in enumerate(recs)])
    jk = {"vs": "sv", "vb": "bv", "v": "v"}
    return json.dumps({"bn": f"/0/{inst}/", "e": [{"n": n, jk[k]: v} for n, k, v in recs]}).encode()


def server_payload(fmt, ssid, lifetime, inst=0):
    if fmt == TLV:
        body = tlv_encode(3, 0, _int(ssid)) + tlv_encode(3, 1, _int(lifetime)) + tlv_encode(3, 6, b"\x01") + tlv_encode(3, 7, b"U")
        return tlv_encode(0, inst, body)
    recs = [("0", "v", ssid), ("1", "v", lifetime), ("6", "vb", True), ("7", "vs", "U")]
    if fmt == SENML_JSON:
        return json.dumps([{"bn": f"/1/{inst}/", "n": n, k: v} if i == 0 else {"n": n, k: v}
                           for i, (n, k, v) in enumerate(recs)]).encode()
    if fmt == SENML_CBOR:
        keys = {"vs": 3, "vb": 4, "v": 2}
        return cbor2.dumps([{**({-2: f"/1/{inst}/"} if i == 0 else {}), 0: n, keys[k]: v} for i, (n, k, v) in enumerate(recs)])
    jk = {"vs": "sv", "vb": "bv", "v": "v"}
    return json.dumps({"bn": f"/1/{inst}/", "e": [{"n": n, jk[k]: v} for n, k, v in recs]}).encode()


@pytest.fixture
def servers():
    bs, dm = TestServer(), TestServer()
    yield bs, dm
    bs.close()
    dm.close()


def provision(bs, dm):
    """The bootstrap server gives the gateway one server account on `dm` (ssid 123)."""
    bs.bs(EP, Code.DELETE, "/")
    bs.bs(EP, Code.PUT, "/0", security_payload(TLV, dm.uri, 123), content_format=TLV)
    bs.bs(EP, Code.PUT, "/1", server_payload(TLV, 123, 45), content_format=TLV)


def bs_agent(agent, bs):
    # No [[server]] table: the agent has only the bootstrap-server account.
    return agent(extra=f'[bootstrap.server]\nuri = "{bs.uri}"\n', servers="")


@pytest.mark.parametrize("fmt", [TLV, SENML_JSON, SENML_CBOR, LWM2M_JSON])
def test_bootstrap_then_register(agent, servers, fmt):
    bs, dm = servers
    a = bs_agent(agent, bs).start()
    bs.wait_for(lambda: EP in bs.bs_clients, 20, "Bootstrap-Request")
    assert bs.bs_queries[0]["ep"] == EP and bs.bs_queries[0].get("pct") == "112"
    assert bs.bs(EP, Code.DELETE, "/").code == Code.DELETED
    r = bs.bs(EP, Code.PUT, "/0", security_payload(fmt, dm.uri, 123), content_format=fmt)
    assert r.code == Code.CHANGED, r.payload
    r = bs.bs(EP, Code.PUT, "/1", server_payload(fmt, 123, 45), content_format=fmt)
    assert r.code == Code.CHANGED, r.payload
    d = bs.bs(EP, Code.GET, "/", accept=LINK)
    found = dict(links(d.payload.decode()))
    assert found["/0/1"]["ssid"] == "123" and found["/1/0"]["ssid"] == "123"
    assert any(k.startswith("/0/") and "ssid" not in v for k, v in found.items()), "the bootstrap account is kept"
    r = bs.bs(EP, Code.GET, "/1/0", accept=SENML_JSON)
    assert r.code == Code.CONTENT
    assert bs.bs(EP, Code.POST, "/bs").code == Code.CHANGED
    reg = dm.wait_registered(EP, 30)
    assert reg.query["lt"] == "45"
    st = a.status_json()
    assert st["bootstrap"] == "bootstrap server" and st["servers"][0]["ssid"] == 123
    # The configuration survives a restart without bootstrapping again.
    assert a.stop() == 0
    a.start()
    dm.wait_for(lambda: len(reg.updates) + [e for e in dm.events].count(("register", EP)) >= 2, 30, "resumed")
    assert a.status_json()["bootstrap"].startswith("bootstrap server (stored")
    assert a.stop() == 0


def test_inconsistent_configuration_is_refused(agent, servers):
    bs, dm = servers
    a = bs_agent(agent, bs).start()
    bs.wait_for(lambda: EP in bs.bs_clients, 20, "Bootstrap-Request")
    bs.bs(EP, Code.DELETE, "/")
    bs.bs(EP, Code.PUT, "/1", server_payload(TLV, 123, 45), content_format=TLV)
    r = bs.bs(EP, Code.POST, "/bs")
    assert r.code == Code.NOT_ACCEPTABLE and b"no Security instance" in r.payload
    bs.bs(EP, Code.PUT, "/0", security_payload(TLV, dm.uri, 123), content_format=TLV)
    assert bs.bs(EP, Code.POST, "/bs").code == Code.CHANGED
    dm.wait_registered(EP, 30)
    assert a.stop() == 0


def test_bad_bootstrap_writes_get_4xx(agent, servers):
    bs, dm = servers
    a = bs_agent(agent, bs).start()
    bs.wait_for(lambda: EP in bs.bs_clients, 20, "Bootstrap-Request")
    assert bs.bs(EP, Code.PUT, "/1/0", b"\xc8\x01\x40", content_format=TLV).code == Code.BAD_REQUEST
    assert bs.bs(EP, Code.PUT, "/77/0", b"1", content_format=0).code == Code.NOT_FOUND
    assert bs.bs(EP, Code.PUT, "/1/0/1", b"1", content_format=4242).code == Code.UNSUPPORTED_CONTENT_FORMAT
    assert bs.bs(EP, Code.GET, "/3/0").code == Code.METHOD_NOT_ALLOWED
    assert a.proc.poll() is None
    assert a.stop() == 0


def test_client_hold_off_time(agent, servers):
    bs, dm = servers
    t0 = time.monotonic()
    a = agent(extra=f'[bootstrap.server]\nuri = "{bs.uri}"\nhold_off = 3\n', servers="").start()
    bs.wait_for(lambda: EP in bs.bs_clients, 20, "Bootstrap-Request")
    assert time.monotonic() - t0 >= 3, "waited the Client Hold Off Time"
    assert a.stop() == 0


def udp_ports(pid):
    """Local ports of the UDP sockets process `pid` holds (from /proc: looking does
    not disturb it, as any datagram to its bootstrap socket would)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[9] in inodes:
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def test_bootstrap_server_account_timeout(agent, servers):
    bs, dm = servers
    a = bs_agent(agent, bs).start()
    bs.wait_for(lambda: EP in bs.bs_clients, 20, "Bootstrap-Request")
    provision(bs, dm)
    # Bootstrap-Server Account Timeout 2 s on the bootstrap account (instance 0 here).
    d = dict(links(bs.bs(EP, Code.GET, "/0", accept=LINK).payload.decode()))
    bs_inst = next(k for k, v in d.items() if k.startswith("/0/") and "ssid" not in v)
    assert bs.bs(EP, Code.PUT, bs_inst + "/12", b"2", content_format=0).code == Code.CHANGED
    assert bs.bs(EP, Code.POST, "/bs").code == Code.CHANGED
    t_finish = time.monotonic()
    # While the account lives, lwgate keeps the socket it bootstrapped on, for a
    # server-initiated bootstrap; purging the account closes it. Watched from
    # /proc, about when the timeout says (the timer starts at Finish).
    port = bs.bs_clients[EP].sockaddr[1]
    assert port in udp_ports(a.proc.pid), "the bootstrap socket is kept after Finish"
    while port in udp_ports(a.proc.pid):
        assert time.monotonic() - t_finish < 2 + 1.5, "bootstrap account not purged 1.5 s after its 2 s timeout"
        time.sleep(0.05)
    gone_after = time.monotonic() - t_finish
    assert gone_after > 2 - 0.2, f"bootstrap account purged {gone_after:.2f} s after Finish, before its 2 s timeout"
    dm.wait_registered(EP, 30)
    # Gone for the bootstrap server: a server-initiated bootstrap on the old socket
    # meets a closed port (ICMP port unreachable), not an answer.
    with pytest.raises(aiocoap.error.NetworkError):
        bs.bs(EP, Code.GET, "/", accept=LINK, timeout=10)
    # Gone from the configuration too: Bootstrap-Request Trigger finds no account
    # to bootstrap from (a trigger that has to open the socket first is kept, see
    # test_bootstrap_request_trigger_opens_the_socket_and_bootstraps).
    requests = len(bs.bs_queries)
    assert dm.execute(EP, "/1/0/9").code == Code.CHANGED
    time.sleep(1.5)
    assert len(bs.bs_queries) == requests, "a Bootstrap-Request after the account was purged"
    assert "bootstrap-server account purged" in a.log.read_text()
    assert a.proc.poll() is None
    assert a.stop() == 0
    # And after a restart: the stored configuration is used, without the account
    # that [bootstrap.server] in lwgate.toml would add to a factory one.
    a.start()
    dm.wait_registered(EP, 30)
    assert a.status_json()["bootstrap"].startswith("bootstrap server (stored")
    assert dm.execute(EP, "/1/0/9").code == Code.CHANGED
    time.sleep(1.5)
    assert len(bs.bs_queries) == requests, "the purged account came back after a restart"
    assert a.stop() == 0


def test_bootstrap_request_trigger_opens_the_socket_and_bootstraps(agent, servers):
    bs, dm = servers
    a = bs_agent(agent, bs).start()
    bs.wait_for(lambda: EP in bs.bs_clients, 20, "Bootstrap-Request")
    provision(bs, dm)
    assert bs.bs(EP, Code.POST, "/bs").code == Code.CHANGED
    dm.wait_registered(EP, 30)
    # After a restart the bootstrap server has no socket yet: the trigger must open
    # one and then bootstrap, once, without a second trigger.
    assert a.stop() == 0
    a.start()
    dm.wait_registered(EP, 30)
    requests = len(bs.bs_queries)
    assert dm.execute(EP, "/1/0/9").code == Code.CHANGED
    bs.wait_for(lambda: len(bs.bs_queries) > requests, 5, "the Bootstrap-Request of the trigger")
    assert a.stop() == 0


def test_missing_finish_times_out_and_is_retried(agent, servers):
    bs, dm = servers
    a = agent(extra=f'[bootstrap.server]\nuri = "{bs.uri}"\nfinish_timeout = 2\n', servers="").start()
    bs.wait_for(lambda: EP in bs.bs_clients, 20, "Bootstrap-Request")
    bs.bs(EP, Code.DELETE, "/")  # ... and never a Finish
    bs.wait_for(lambda: (a.status_json().get("bootstrap_error") or "").startswith("no Bootstrap-Finish"), 15, "timeout")
    assert a.status_json()["servers"] == []
    # Retried with back-off (20 s after the first failure).
    bs.wait_for(lambda: len(bs.bs_queries) >= 2, 30, "a second Bootstrap-Request")
    assert a.stop() == 0


def test_server_initiated_bootstrap_after_a_client_initiated_one(agent, servers):
    bs, dm = servers
    dm2 = TestServer()
    try:
        a = bs_agent(agent, bs).start()
        bs.wait_for(lambda: EP in bs.bs_clients, 20, "Bootstrap-Request")
        provision(bs, dm)
        assert bs.bs(EP, Code.POST, "/bs").code == Code.CHANGED
        reg = dm.wait_registered(EP, 30)
        # Later the bootstrap server moves the gateway to another server, unasked.
        requests_before = len(bs.bs_queries)
        bs.bs(EP, Code.DELETE, "/0/1")
        bs.bs(EP, Code.DELETE, "/1/0")
        bs.bs(EP, Code.PUT, "/0", security_payload(TLV, dm2.uri, 124, inst=2), content_format=TLV)
        bs.bs(EP, Code.PUT, "/1", server_payload(TLV, 124, 60, inst=1), content_format=TLV)
        assert bs.bs(EP, Code.POST, "/bs").code == Code.CHANGED
        dm2.wait_registered(EP, 30)
        assert reg.deregistered, "the old account de-registered"
        assert len(bs.bs_queries) == requests_before, "no Bootstrap-Request: server-initiated"
        assert a.stop() == 0
    finally:
        dm2.close()


def test_no_bootstrap_while_stopping(agent, servers):
    bs, dm = servers
    # A server account and a bootstrap account: de-registering at SIGTERM leaves
    # every server "stopped", which must not read as "all registrations failed".
    a = agent(extra=f'[bootstrap.server]\nuri = "{bs.uri}"\n',
              servers=f'[[server]]\nuri = "{dm.uri}"\nssid = 101\nlifetime = 300\n').start()
    dm.wait_registered(EP, 15)
    assert a.stop() == 0
    log = a.log.read_text()
    assert "de-registering" in log
    assert "bootstrap" not in log.split("SIGTERM")[1], log
    assert bs.bs_queries == []

"""Stored values of a registration the server lost: they go out with Send (1.1,
POST /dp) after the fresh Register, since the observations they belonged to are
gone. Every value stored reaches the server, in order, with the time it was read."""

import time

import cbor2

from lwm2m_server import SENML_CBOR, TEXT, TestServer
from relay import Relay
from test_store_forward import FAST, server_table

EP = "test-gw"


def senml_records(payload):
    """(name, value, time) of each record of a SenML CBOR pack."""
    out, bn, bt = [], "", 0.0
    for r in cbor2.loads(payload):
        bn = r.get(-2, bn)
        bt = r.get(-3, bt)
        out.append((bn + r.get(0, ""), r.get(2), bt + r.get(6, 0.0)))
    return out


def test_stored_values_of_a_lost_registration_reach_the_server_with_send(agent):
    srv = TestServer()
    relay = Relay(srv.port)
    srv2 = None
    try:
        a = agent(servers=server_table(relay.uri, lifetime=300, extra=FAST)).start()
        srv.wait_registered(EP)
        # Quick retries once the server is gone (Communication Retry Timer, Sequence Delay Timer).
        assert srv.write(EP, "/1/0/18", b"1", TEXT).code.is_successful()
        assert srv.write(EP, "/1/0/19", b"2", TEXT).code.is_successful()
        assert srv.write_attributes(EP, "/3/0/13", "pmin=1", "pmax=1").code.is_successful()
        first, notes, cancel = srv.observe(EP, "/3/0/13", accept=SENML_CBOR)
        srv.wait_for(lambda: len(relay.notifications) >= 3, 15, "live notifications")
        relay.drop = True
        time.sleep(6)
        assert a.status_json()["servers"][0]["queued"] >= 3, a.status_json()
        # The server comes back, but a new one that knows nothing of the gateway.
        delivered = [senml_records(p)[0][1] for obs, p in relay.notifications if obs]
        port = srv.port
        srv.close()
        srv2 = TestServer(port=port)
        t_back = time.time()
        relay.drop = False
        srv2.wait_registered(EP, 40)
        srv2.wait_for(lambda: srv2.sent and a.status_json()["servers"][0]["queued"] == 0, 30, "the stored values sent")
        got = []
        for cf, payload in srv2.sent:
            assert cf == SENML_CBOR
            got.extend(senml_records(payload))
        assert got and all(n == "/3/0/13" for n, _, _ in got), got
        # Each with the time it was read (the clock's value is its own time) ...
        assert all(v == int(t) for _, v, t in got), got
        values = [v for _, v, _ in got]
        # ... in order, no gap, nothing lost between the last one the old server got
        # and the moment the server came back.
        assert all(b == a_ + 1 for a_, b in zip(values, values[1:])), values
        assert values[0] <= delivered[-1] + 1, (delivered[-3:], values[:3])
        assert values[-1] >= int(t_back) - 3, (values[-3:], t_back)
        assert a.status_json()["servers"][0]["dropped"] == 0
        a.stop()
    finally:
        relay.close()
        if srv2:
            srv2.close()
        else:
            srv.close()

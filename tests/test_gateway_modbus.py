"""The gateway half as an operator meets it: a Modbus/TCP device (pymodbus, an
independent implementation) behind lwgate appears at the LwM2M server (aiocoap) as
an end device behind /25, read, observed and written through its prefix, and
reported as down (5.03, its /3/0/11) when it stops answering, until it is back."""

import json
import time

import cbor2
import pytest
from aiocoap import Code

from conftest import ROOT
from lwm2m_formats import links, senml_cbor, senml_json, tlv_decode
from lwm2m_server import SENML_CBOR, SENML_JSON, TEXT, TLV, TestServer
from modbus_sim import ModbusSim

EP = "test-gw"


def device_file(port, poll_ms=200):
    return f"""
[device]
id = "meter-1"
prefix = "m1"
protocol = "modbus-tcp"
manufacturer = "ACME Meters"
model = "TM-2"

[modbus]
host = "127.0.0.1"
port = {port}
unit = 1
poll_ms = {poll_ms}
timeout_ms = 300
retries = 0
reconnect_max_ms = 1000

[[modbus.point]]
path = "3303/0/5700"
register = "holding-register"
address = 0
type = "f32"

[[modbus.point]]
path = "3303/0/5701"
register = "holding-register"
address = 2
type = "string"
registers = 2

[[modbus.point]]
path = "3311/0/5850"
register = "coil"
address = 0
type = "bool"
writable = true

[[modbus.point]]
path = "3311/0/5851"
register = "holding-register"
address = 10
type = "u16"
scale = 0.5
writable = true
"""


@pytest.fixture
def gateway(agent):
    sim = ModbusSim(units=(1,))
    sim.set_float(1, 0, 21.5)
    sim.set_registers(1, 2, [ord("C") << 8 | ord("e"), ord("l") << 8])  # "Cel"
    sim.set_registers(1, 10, [80])  # dimmer 40.0 with scale 0.5
    srv = TestServer()
    a = agent(
        extra=f'[lwm2m]\nobject_dirs = ["{ROOT / "objects"}"]\n',
        servers=f'[[server]]\nuri = "{srv.uri}"\nssid = 101\nlifetime = 300\n',
    )
    (a.devices / "meter.toml").write_text(device_file(sim.port))
    a.start()
    srv.wait_registered(EP, 15)
    yield a, srv, sim
    a.stop()
    srv.close()
    sim.stop()


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def read_value(srv, path, accept=TEXT):
    r = srv.read(EP, path, accept=accept)
    return r


def test_the_end_device_is_behind_25_and_read_through_its_prefix(gateway):
    a, srv, sim = gateway
    reg = srv.registrations[EP]
    objs = dict(links(reg.links))
    assert "/25/0" in objs and not any(k.startswith("/3303") for k in objs), reg.links
    r = srv.read(EP, "/25/0", accept=SENML_JSON)
    v = senml_json(r.payload)
    assert v["/25/0/0"] == "meter-1" and v["/25/0/1"] == "m1", v
    assert "</3303/0>" in v["/25/0/3"] and "</3311/0>" in v["/25/0/3"], v
    # The first poll lands within a poll period or two.
    wait_for(lambda: srv.read(EP, "/m1/3303/0/5700").code == Code.CONTENT, 5, "the first poll")
    r = srv.read(EP, "/m1/3303/0/5700")
    assert float(r.payload) == 21.5
    r = srv.read(EP, "/m1/3303/0", accept=SENML_JSON)
    v = senml_json(r.payload)
    assert v["/m1/3303/0/5700"] == 21.5 and v["/m1/3303/0/5701"] == "Cel", v
    r = srv.read(EP, "/m1/3303/0", accept=SENML_CBOR)
    assert senml_cbor(r.payload)["/m1/3303/0/5700"] == 21.5
    r = srv.read(EP, "/m1/3303/0", accept=TLV)
    res = {rid: body for _, rid, body in tlv_decode(r.payload)[0][2]} if tlv_decode(r.payload)[0][0] == 0 else {rid: body for _, rid, body in tlv_decode(r.payload)}
    import struct
    assert struct.unpack(">f", res[5700])[0] == 21.5 or struct.unpack(">d", res[5700])[0] == 21.5
    assert float(srv.read(EP, "/m1/3311/0/5851").payload) == 40.0
    # Its own Device object, from its file.
    assert srv.read(EP, "/m1/3/0/0").payload == b"ACME Meters"
    # Composite across the gateway and the end device.
    q = json.dumps([{"n": "/3/0/0"}, {"n": "/m1/3303/0/5700"}]).encode()
    r = srv.read_composite(EP, q, SENML_JSON)
    v = senml_json(r.payload)
    assert v["/m1/3303/0/5700"] == 21.5 and "/3/0/0" in v, v
    st = a.status_json()["devices"][0]
    assert st["state"] == "up" and st["instance"] == 0 and st["last_ok"], st


def test_an_observed_end_device_value_notifies_from_polls(gateway):
    a, srv, sim = gateway
    wait_for(lambda: srv.read(EP, "/m1/3303/0/5700").code == Code.CONTENT, 5, "the first poll")
    first, notes, cancel = srv.observe(EP, "/m1/3303/0/5700", accept=SENML_CBOR)
    assert senml_cbor(first.payload)["/m1/3303/0/5700"] == 21.5
    sim.set_float(1, 0, 23.25)
    srv.wait_for(lambda: any(senml_cbor(n.payload).get("/m1/3303/0/5700") == 23.25 for n in notes if not isinstance(n, Exception)), 5, "a notification of the new value")
    n = next(n for n in notes if senml_cbor(n.payload).get("/m1/3303/0/5700") == 23.25)
    rec = cbor2.loads(n.payload)[0]
    assert rec[-2].startswith("/m1/3303/0/5700") and abs(rec[-3] - time.time()) < 5, rec
    cancel()


def test_writes_reach_the_device_and_are_answered_by_it(gateway):
    a, srv, sim = gateway
    wait_for(lambda: srv.read(EP, "/m1/3311/0/5850").code == Code.CONTENT, 5, "the first poll")
    assert srv.write(EP, "/m1/3311/0/5850", b"1", TEXT).code == Code.CHANGED
    assert sim.coil(1, 0) is True
    assert srv.read(EP, "/m1/3311/0/5850").payload == b"1"
    # Scale applies backwards: 60.0 with scale 0.5 is register value 120.
    assert srv.write(EP, "/m1/3311/0/5851", b"60", TEXT).code == Code.CHANGED
    assert sim.registers(1, 10, 1) == [120]
    # Read-only on the device: the Sensor Value.
    assert srv.write(EP, "/m1/3303/0/5700", b"1", TEXT).code == Code.METHOD_NOT_ALLOWED


def test_a_device_that_stops_answering_is_reported_and_recovers(gateway):
    a, srv, sim = gateway
    wait_for(lambda: srv.read(EP, "/m1/3303/0/5700").code == Code.CONTENT, 5, "the first poll")
    sim.stop()
    r = wait_for(lambda: (lambda r: r if r.code == Code.SERVICE_UNAVAILABLE else None)(srv.read(EP, "/m1/3303/0/5700")), 10, "5.03")
    assert any(w in r.payload for w in (b"refused", b"answer", b"lost")), r.payload
    st = a.status_json()["devices"][0]
    assert st["state"].startswith("down: "), st
    # /25 stays; the end device's Device object says what is wrong.
    assert srv.read(EP, "/25/0/1").payload == b"m1"
    r = srv.read(EP, "/m1/3/0/11", accept=SENML_JSON)
    assert senml_json(r.payload)["/m1/3/0/11/0"] == 8
    assert srv.write(EP, "/m1/3311/0/5850", b"1", TEXT).code == Code.SERVICE_UNAVAILABLE
    assert "end device down" in a.log.read_text()
    sim.start()
    wait_for(lambda: srv.read(EP, "/m1/3303/0/5700").code == Code.CONTENT, 10, "recovery")
    assert a.status_json()["devices"][0]["state"] == "up"
    r = srv.read(EP, "/m1/3/0/11", accept=SENML_JSON)
    assert senml_json(r.payload)["/m1/3/0/11/0"] == 0

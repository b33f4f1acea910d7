"""The gateway half as an operator meets it: a Modbus/TCP device (pymodbus, an
independent implementation) behind lwgate appears at the LwM2M server (aiocoap) as
an end device behind /25, read, observed and written through its prefix, and
reported as down (5.03, its /3/0/11) when it stops answering, until it is back."""

import json
import struct
import time

import cbor2
import pytest
from aiocoap import Code

from conftest import ROOT, wait_for
from lwm2m_formats import links, senml_cbor, senml_json, tlv_resources
from lwm2m_server import SENML_CBOR, SENML_JSON, TEXT, TLV, TestServer
from modbus_sim import ModbusSim, PtyPair

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

[[modbus.point]]
path = "3303/0/5605"       # Reset Min and Max Measured Values (E): pulses coil 5
register = "coil"
address = 5
type = "bool"
execute_value = true
"""


@pytest.fixture
def gateway(agent):
    sim = ModbusSim(units=(1, 2))
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
    flat = tlv_resources(r.payload)
    raw = flat.get("5700", flat.get("0/5700"))
    assert struct.unpack(">f" if len(raw) == 4 else ">d", raw)[0] == 21.5, flat
    assert float(srv.read(EP, "/m1/3311/0/5851").payload) == 40.0
    # Its own Device object, from its file.
    assert srv.read(EP, "/m1/3/0/0").payload == b"ACME Meters"
    # Composite across the gateway and the end device.
    q = json.dumps([{"n": "/3/0/0"}, {"n": "/m1/3303/0/5700"}]).encode()
    r = srv.read_composite(EP, q, SENML_JSON)
    v = senml_json(r.payload)
    assert v["/m1/3303/0/5700"] == 21.5 and "/3/0/0" in v, v
    st = a.status_json()["devices"][0]
    assert st["state"] == "up" and st["instance"] == 0, st
    # The counters follow within a second.
    st = wait_for(lambda: (lambda d: d if d["last_ok"] else None)(a.status_json()["devices"][0]), 3, "the counters")
    assert st["requests"] > 0 and abs(st["last_ok"] - time.time()) < 5, st


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
    # An Execute writes the point's execute_value.
    assert sim.coil(1, 5) is False
    assert srv.execute(EP, "/m1/3303/0/5605").code == Code.CHANGED
    assert sim.coil(1, 5) is True
    # Execute on a resource the device has no point for: refused by the device.
    assert srv.execute(EP, "/m1/3311/0/5850").code == Code.METHOD_NOT_ALLOWED


def test_composites_and_send_mix_the_gateway_and_the_end_device(gateway):
    a, srv, sim = gateway
    wait_for(lambda: srv.read(EP, "/m1/3303/0/5700").code == Code.CONTENT, 5, "the first poll")
    # Write-Composite: the gateway's Default Minimum Period and the device's dimmer.
    body = json.dumps([{"n": "/1/0/2", "v": 3}, {"n": "/m1/3311/0/5851", "v": 25}]).encode()
    r = srv.write_composite(EP, body, SENML_JSON)
    assert r.code == Code.CHANGED, (r.code, r.payload)
    assert sim.registers(1, 10, 1) == [50], "scale 0.5 applied backwards"
    assert srv.read(EP, "/1/0/2").payload == b"3"
    assert float(srv.read(EP, "/m1/3311/0/5851").payload) == 25.0
    # One read-only record refuses the whole write: nothing reaches either side.
    body = json.dumps([{"n": "/1/0/2", "v": 9}, {"n": "/m1/3311/0/5851", "v": 30}, {"n": "/m1/3303/0/5700", "v": 1}]).encode()
    assert srv.write_composite(EP, body, SENML_JSON).code == Code.METHOD_NOT_ALLOWED
    assert srv.read(EP, "/1/0/2").payload == b"3" and sim.registers(1, 10, 1) == [50]
    srv.write(EP, "/1/0/2", b"0", TEXT)
    # Observe-Composite over both: a change on the device notifies with both values.
    q = json.dumps([{"n": "/3/0/0"}, {"n": "/m1/3303/0/5700"}]).encode()
    first, notes, cancel = srv.observe(EP, "/", accept=SENML_JSON, composite=q, cf=SENML_JSON)
    assert first.code == Code.CONTENT, first
    v = senml_json(first.payload)
    assert v["/m1/3303/0/5700"] == 21.5 and "/3/0/0" in v, v
    sim.set_float(1, 0, 19.75)
    srv.wait_for(lambda: any(senml_json(n.payload).get("/m1/3303/0/5700") == 19.75 for n in notes if not isinstance(n, Exception)), 5, "a composite notification")
    n = next(n for n in notes if senml_json(n.payload).get("/m1/3303/0/5700") == 19.75)
    assert "/3/0/0" in senml_json(n.payload)
    cancel()
    # Send (1.1) of a gateway resource and an end-device resource, names with the prefix.
    r = a.cli("send", "--config", str(a.config), "/3/0/0", "/m1/3303/0/5700", check=False)
    assert r.returncode == 0, r.stderr
    srv.wait_for(lambda: len(srv.sent) == 1, 10, "a Send")
    cf, payload = srv.sent[0]
    values = senml_cbor(payload)
    assert values["/m1/3303/0/5700"] == 19.75 and "/3/0/0" in values, values


def test_a_device_that_stops_answering_is_reported_and_recovers(gateway):
    a, srv, sim = gateway
    wait_for(lambda: srv.read(EP, "/m1/3303/0/5700").code == Code.CONTENT, 5, "the first poll")
    sim.stop()
    r = wait_for(lambda: (lambda r: r if r.code == Code.SERVICE_UNAVAILABLE else None)(srv.read(EP, "/m1/3303/0/5700")), 10, "5.03")
    assert any(w in r.payload for w in (b"refused", b"did not answer", b"closed by the device")), r.payload
    assert b"No such file" not in r.payload, r.payload
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


def simple_device(dev_id, port, unit, poll_ms=200):
    return f"""
[device]
id = "{dev_id}"
protocol = "modbus-tcp"
[modbus]
host = "127.0.0.1"
port = {port}
unit = {unit}
poll_ms = {poll_ms}
[[modbus.point]]
path = "3303/0/5700"
register = "holding-register"
address = 0
type = "f32"
"""


def test_sighup_applies_only_the_difference(agent):
    import signal

    sim = ModbusSim(units=(1, 2, 3, 4))
    for u in (1, 2, 3, 4):
        sim.set_float(u, 0, 10.0 * u)
    srv = TestServer()
    try:
        a = agent(
            extra=f'[lwm2m]\nobject_dirs = ["{ROOT / "objects"}"]\n',
            servers=f'[[server]]\nuri = "{srv.uri}"\nssid = 101\nlifetime = 300\n',
        )
        for name, unit in (("keep", 1), ("change", 2), ("drop", 4)):
            (a.devices / f"{name}.toml").write_text(simple_device(name, sim.port, unit))
        a.start()
        reg = srv.wait_registered(EP, 15)
        wait_for(lambda: srv.read(EP, "/keep/3303/0/5700").code == Code.CONTENT, 5, "the first poll")
        first, notes, cancel = srv.observe(EP, "/keep/3303/0/5700", accept=SENML_CBOR)
        updates = len(reg.updates)
        (a.devices / "change.toml").write_text(simple_device("change", sim.port, 2, poll_ms=300))
        (a.devices / "drop.toml").unlink()
        (a.devices / "add.toml").write_text(simple_device("add", sim.port, 3))
        a.proc.send_signal(signal.SIGHUP)
        srv.wait_for(lambda: len(reg.updates) > updates, 10, "the Registration Update")
        time.sleep(1)
        assert len(reg.updates) == updates + 1, reg.updates[updates:]
        prefixes = sorted(v for k, v in senml_json(srv.read(EP, "/25", accept=SENML_JSON).payload).items() if k.endswith("/1"))
        assert prefixes == ["add", "change", "keep"], prefixes
        assert srv.read(EP, "/drop/3303/0/5700").code == Code.NOT_FOUND
        wait_for(lambda: srv.read(EP, "/add/3303/0/5700").code == Code.CONTENT, 5, "the new device's poll")
        assert float(srv.read(EP, "/add/3303/0/5700").payload) == 30.0
        # The untouched device kept running, and its observation with it.
        sim.set_float(1, 0, 11.5)
        srv.wait_for(lambda: any(senml_cbor(n.payload).get("/keep/3303/0/5700") == 11.5 for n in notes if not isinstance(n, Exception)), 5, "a notification after the reload")
        assert "end device stopped" not in "".join(l for l in a.log.read_text().splitlines() if "keep" in l)
        cancel()
        a.stop()
    finally:
        srv.close()
        sim.stop()


def test_an_observed_end_device_value_is_stored_offline_and_replayed(agent):
    from relay import Relay

    sim = ModbusSim(units=(1,))
    srv = TestServer()
    relay = Relay(srv.port)
    try:
        a = agent(
            extra=f'[lwm2m]\nobject_dirs = ["{ROOT / "objects"}"]\n',
            servers=f'[[server]]\nuri = "{relay.uri}"\nssid = 101\nlifetime = 300\nack_timeout = 1\nmax_retransmit = 1\n',
        )
        (a.devices / "meter.toml").write_text(simple_device("meter", sim.port, 1))
        a.start()
        srv.wait_registered(EP, 15)
        assert srv.write(EP, "/1/0/18", b"1", TEXT).code.is_successful()
        assert srv.write(EP, "/1/0/19", b"2", TEXT).code.is_successful()
        wait_for(lambda: srv.read(EP, "/meter/3303/0/5700").code == Code.CONTENT, 5, "the first poll")
        assert srv.write_attributes(EP, "/meter/3303/0/5700", "pmin=1", "pmax=1").code.is_successful()
        first, notes, cancel = srv.observe(EP, "/meter/3303/0/5700", accept=SENML_JSON)
        srv.wait_for(lambda: len(relay.notifications) >= 2, 10, "live notifications")
        relay.drop = True
        # Values go on changing on the device while the server is unreachable.
        t0 = time.time()
        for i in range(6):
            sim.set_float(1, 0, 100.0 + i)
            time.sleep(1)
        assert a.status_json()["servers"][0]["queued"] >= 3
        relay.drop = False
        srv.wait_for(lambda: a.status_json()["servers"][0]["queued"] == 0 and any(
            json.loads(p)[-1].get("v", 0) >= 105.0 for _, p in relay.notifications if p), 30, "replay")
        got = []
        for _, p in relay.notifications:
            recs = json.loads(p) if p else []
            bt = 0.0
            for r in recs:
                bt = r.get("bt", bt)
                if "v" in r and bt + r.get("t", 0) >= t0 - 0.5:
                    got.append((bt + r.get("t", 0), r["v"], r.get("bn", "")))
        values = [v for _, v, _ in got]
        # Every value the device had during the outage reached the server, in order, with its time.
        for want in (100.0, 101.0, 102.0, 103.0, 104.0, 105.0):
            assert want in values, (want, got)
        times = [t for t, _, _ in got]
        assert times == sorted(times), got
        names = {bn for _, _, bn in got if bn}
        assert names and all(n.startswith("/meter/3303/0/5700") for n in names), names
        cancel()
        a.stop()
    finally:
        relay.close()
        srv.close()
        sim.stop()


def rtu_device(dev_id, tty, unit):
    return f"""
[device]
id = "{dev_id}"
protocol = "modbus-rtu"
[modbus]
tty = "{tty}"
baud = 9600
unit = {unit}
poll_ms = 200
timeout_ms = 300
retries = 1
[[modbus.point]]
path = "3303/0/5700"
register = "holding-register"
address = 0
type = "f32"
[[modbus.point]]
path = "3303/0/5750"
register = "holding-register"
address = 20
type = "string"
registers = 2
[[modbus.point]]
path = "3311/0/5850"
register = "coil"
address = 0
type = "bool"
writable = true
"""


def test_rtu_units_on_one_bus_through_their_prefixes(agent):
    """Two units on one serial line (pymodbus RTU behind a socat pty pair): each is
    an end device with its own prefix, read, written and observed; a burst of bad
    CRCs is reported against the device it hit and both recover by themselves."""
    pty = PtyPair()
    sim = ModbusSim(units=(1, 2), rtu=pty.sim)
    sim.set_float(1, 0, 7.5)
    sim.set_float(2, 0, 8.5)
    sim.set_registers(2, 20, [ord("R") << 8 | ord("H"), 0])
    srv = TestServer()
    try:
        a = agent(
            extra=f'[lwm2m]\nobject_dirs = ["{ROOT / "objects"}"]\n',
            servers=f'[[server]]\nuri = "{srv.uri}"\nssid = 101\nlifetime = 300\n',
        )
        (a.devices / "a.toml").write_text(rtu_device("pump-a", pty.device, 1))
        (a.devices / "b.toml").write_text(rtu_device("pump-b", pty.device, 2))
        a.start()
        srv.wait_registered(EP, 15)
        for prefix, want in (("pump-a", 7.5), ("pump-b", 8.5)):
            wait_for(lambda prefix=prefix: srv.read(EP, f"/{prefix}/3303/0/5700").code == Code.CONTENT, 10, f"{prefix}'s first poll")
            assert float(srv.read(EP, f"/{prefix}/3303/0/5700").payload) == want
        assert srv.read(EP, "/pump-b/3303/0/5750").payload == b"RH"
        assert srv.write(EP, "/pump-b/3311/0/5850", b"1", TEXT).code == Code.CHANGED
        assert sim.coil(2, 0) is True and sim.coil(1, 0) is False
        rows = {d["id"]: d for d in a.status_json()["devices"]}
        assert set(rows) == {"pump-a", "pump-b"} and all(r["state"] == "up" for r in rows.values()), rows
        first, notes, cancel = srv.observe(EP, "/pump-a/3303/0/5700", accept=SENML_JSON)
        sim.set_float(1, 0, 9.25)
        srv.wait_for(lambda: any(senml_json(n.payload).get("/pump-a/3303/0/5700") == 9.25 for n in notes if not isinstance(n, Exception)), 5, "a notification from the RTU poll")
        # Both tries of one request get a spoiled answer: that device is down, saying why.
        seen = set()

        def crc_reported():
            for d in a.status_json()["devices"]:
                if "bad CRC" in d["state"]:
                    seen.add(d["id"])
            return seen

        sim.corrupt(2)
        wait_for(crc_reported, 5, "the bad CRC in lwgate status")
        wait_for(lambda: all(d["state"] == "up" for d in a.status_json()["devices"]), 5, "recovery")
        sim.set_float(2, 0, 1.5)
        wait_for(lambda: float(srv.read(EP, "/pump-b/3303/0/5700").payload) == 1.5, 5, "polls after the noise")
        assert "bad CRC" in a.log.read_text()
        cancel()
        a.stop()
    finally:
        srv.close()
        sim.stop()
        pty.close()


def test_an_exception_is_that_devices_problem_only(gateway):
    """A unit that answers with Modbus exception 2 (illegal data address): reported
    on that device, and its neighbour on the same connection goes on; it recovers
    once the unit answers again."""
    a, srv, sim = gateway
    sim.fail(2, 2)
    (a.devices / "ghost.toml").write_text(simple_device("ghost", sim.port, 2))
    import signal

    a.proc.send_signal(signal.SIGHUP)
    row = wait_for(lambda: next((d for d in a.status_json()["devices"] if d["id"] == "ghost" and d["state"].startswith("down")), None), 10, "the exception in lwgate status")
    assert "exception" in row["state"] and "illegal data address" in row["state"].lower(), row
    r = srv.read(EP, "/ghost/3303/0/5700")
    assert r.code == Code.SERVICE_UNAVAILABLE and b"exception" in r.payload, r.payload
    meter = next(d for d in a.status_json()["devices"] if d["id"] == "meter-1")
    assert meter["state"] == "up", meter
    sim.set_float(1, 0, 30.0)
    wait_for(lambda: float(srv.read(EP, "/m1/3303/0/5700").payload) == 30.0, 5, "the other device's polls")
    sim.fail(2, None)
    sim.set_float(2, 0, 4.5)
    wait_for(lambda: srv.read(EP, "/ghost/3303/0/5700").code == Code.CONTENT, 5, "recovery")
    assert float(srv.read(EP, "/ghost/3303/0/5700").payload) == 4.5


def test_check_config_names_modbus_mistakes(agent):
    a = agent(servers='[[server]]\nuri = "coap://127.0.0.1:5683"\nssid = 101\n')
    cases = [
        ('[device]\nid = "pump"\nprotocol = "modbus-tcp"\n', "pump.toml: modbus: expected a [modbus] table for a modbus-tcp device"),
        (simple_device("pump", 502, 1).replace('type = "f32"', 'type = "float"'), "pump.toml:14: modbus.point[0].type"),
        (simple_device("pump", 502, 1).replace('register = "holding-register"', 'register = "input-register"\nwritable = true'), "pump.toml:"),
    ]
    for text, want in cases:
        (a.devices / "pump.toml").write_text(text)
        r = a.cli("check-config", "--config", str(a.config), check=False)
        assert r.returncode == 1 and want in r.stderr, (text, r.stderr)

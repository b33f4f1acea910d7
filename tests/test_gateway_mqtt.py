"""MQTT devices behind lwgate as an operator meets them: a real mosquitto broker,
sensors publishing with mosquitto's own clients, and the aiocoap test LwM2M server
reading, observing and writing them through their prefixes — declared devices,
devices found by topic (kept across restarts), the message's own time in the
notifications, writes published and acknowledged, availability from a status
topic and from a broker restart."""

import json
import os
import time
from pathlib import Path

import cbor2
import pytest
from aiocoap import Code

from conftest import ROOT, wait_for
from lwm2m_formats import links, senml_cbor, senml_json
from lwm2m_server import SENML_CBOR, SENML_JSON, TEXT, TestServer
from mqtt_broker import Broker

EP = "test-gw"


def declared(port):
    return f"""
[device]
id = "th-1"
protocol = "mqtt"
manufacturer = "ACME"

[mqtt]
port = {port}
client_id = "lwgate-test"
topic = "sensors/th-1/data"
time_json = "/ts"
status_topic = "sensors/th-1/status"
response_topic = "sensors/th-1/ack"
response_timeout_ms = 1500
response_error = "error"
min_interval_ms = 0

[[mqtt.point]]
path = "3303/0/5700"
json = "/temp"
type = "float"

[[mqtt.point]]
path = "3311/0/5850"
json = "/light"
type = "bool"
write_topic = "sensors/th-1/set"
write_payload = '{{"light": {{value}}}}'
"""


def discovering(port, cap=100):
    return f"""
[device]
id = "fleet"
protocol = "mqtt"

[mqtt]
port = {port}
client_id = "lwgate-test-fleet"
topic = "fleet/+/telemetry"
name = "{{1}}"
max_devices = {cap}
min_interval_ms = 0

[[mqtt.point]]
path = "3303/0/5700"
json = "/t"
type = "float"
scale = 0.1
"""


@pytest.fixture
def gateway(agent):
    broker = Broker()
    srv = TestServer()
    a = agent(
        extra=f'[lwm2m]\nobject_dirs = ["{ROOT / "objects"}"]\n',
        servers=f'[[server]]\nuri = "{srv.uri}"\nssid = 101\nlifetime = 300\n',
    )
    (a.devices / "th1.toml").write_text(declared(broker.port))
    (a.devices / "fleet.toml").write_text(discovering(broker.port))
    a.start()
    srv.wait_registered(EP, 15)
    yield a, srv, broker
    a.stop()
    srv.close()
    broker.close()


def value(srv, path):
    r = srv.read(EP, path)
    return r.payload if r.code == Code.CONTENT else None


def test_a_declared_json_device_is_read_and_observed_with_its_own_time(gateway):
    a, srv, broker = gateway
    st = {d["id"]: d for d in a.status_json()["devices"]}
    assert st["th-1"]["protocol"] == "mqtt" and st["fleet"]["state"].startswith("discovering"), st
    # Until it speaks, its values are unavailable (not absent).
    assert srv.read(EP, "/th-1/3303/0/5700").code == Code.SERVICE_UNAVAILABLE
    ts = 1_700_000_000.25
    wait_for(lambda: broker.publish("sensors/th-1/data", json.dumps({"temp": 21.5, "light": False, "ts": ts * 1000})) or value(srv, "/th-1/3303/0/5700"), 10, "the first message")
    assert float(value(srv, "/th-1/3303/0/5700")) == 21.5
    assert value(srv, "/th-1/3311/0/5850") == b"0"
    first, notes, cancel = srv.observe(EP, "/th-1/3303/0/5700", accept=SENML_CBOR)
    broker.publish("sensors/th-1/data", json.dumps({"temp": 22.75, "ts": ts + 10}))
    srv.wait_for(lambda: any(senml_cbor(n.payload).get("/th-1/3303/0/5700") == 22.75 for n in notes if not isinstance(n, Exception)), 5, "a notification")
    n = next(n for n in notes if senml_cbor(n.payload).get("/th-1/3303/0/5700") == 22.75)
    rec = cbor2.loads(n.payload)[0]
    # SenML CBOR: -3 base time (or 6 time): the payload's time, not the arrival.
    times = [v for k, v in rec.items() if k in (-3, 6)]
    assert any(abs(t - (ts + 10)) < 0.01 for t in times), rec
    cancel()


def test_a_write_is_published_and_answered_by_the_devices_acknowledgement(gateway):
    a, srv, broker = gateway
    broker.publish("sensors/th-1/data", json.dumps({"temp": 20, "light": False}))
    wait_for(lambda: value(srv, "/th-1/3311/0/5850"), 10, "the first message")
    sub = broker.subscribe("sensors/th-1/set")

    def ack(payload):
        wait_for(lambda: sub.messages, 5, "the published write")
        broker.publish("sensors/th-1/ack", payload)

    import threading

    t = threading.Thread(target=ack, args=("ok",))
    t.start()
    r = srv.write(EP, "/th-1/3311/0/5850", b"1", TEXT)
    t.join()
    assert r.code == Code.CHANGED, (r.code, r.payload)
    assert json.loads(sub.messages[0][1]) == {"light": True}
    # The device says no: 5.00 with its answer.
    sub.messages.clear()
    t = threading.Thread(target=ack, args=("error: relay stuck",))
    t.start()
    r = srv.write(EP, "/th-1/3311/0/5850", b"0", TEXT)
    t.join()
    assert r.code == Code.INTERNAL_SERVER_ERROR and b"relay stuck" in r.payload, (r.code, r.payload)
    # No acknowledgement at all: 5.00 after the timeout.
    r = srv.write(EP, "/th-1/3311/0/5850", b"0", TEXT)
    assert r.code == Code.INTERNAL_SERVER_ERROR and b"no acknowledgement" in r.payload, (r.code, r.payload)
    # Not writable.
    assert srv.write(EP, "/th-1/3303/0/5700", b"1", TEXT).code == Code.METHOD_NOT_ALLOWED
    sub.close()


def test_devices_found_by_topic_get_their_25_instance_and_keep_it_across_a_restart(gateway, agent):
    a, srv, broker = gateway
    before = srv.registrations[EP].links
    broker.publish("fleet/pump-7/telemetry", json.dumps({"t": 215}))
    wait_for(lambda: value(srv, "/pump-7/3303/0/5700"), 10, "the found device's value")
    assert float(value(srv, "/pump-7/3303/0/5700")) == 21.5
    # The Registration Update names the new /25 instance.
    wait_for(lambda: srv.registrations[EP].links != before, 10, "an Update with the new instance")
    objs = dict(links(srv.registrations[EP].links))
    assert sum(1 for k in objs if k.startswith("/25/")) == 2, objs
    gw = senml_json(srv.read(EP, "/25", accept=SENML_JSON).payload)
    assert "pump-7" in gw.values(), gw
    # A name that cannot be a prefix is not a device.
    broker.publish("fleet/12/telemetry", json.dumps({"t": 1}))
    broker.publish("fleet/pump-7/telemetry", "not json")
    time.sleep(0.5)
    assert srv.read(EP, "/12/3303/0/5700").code != Code.CONTENT
    # The bad payload is counted (the counters follow within a second or two).
    st = wait_for(lambda: (lambda s: s if s["pump-7"]["errors"] >= 1 else None)({d["id"]: d for d in a.status_json()["devices"]}), 5, "the error counted")
    assert "12" not in st, st
    # After a restart it is there before it speaks (5.03 until it does).
    a.stop()
    a.start()
    srv.wait_registered(EP, 15)
    gw = senml_json(srv.read(EP, "/25", accept=SENML_JSON).payload)
    assert "pump-7" in gw.values(), gw
    assert srv.read(EP, "/pump-7/3303/0/5700").code == Code.SERVICE_UNAVAILABLE
    broker.publish("fleet/pump-7/telemetry", json.dumps({"t": 200}))
    wait_for(lambda: value(srv, "/pump-7/3303/0/5700") == b"20.0" or value(srv, "/pump-7/3303/0/5700") == b"20", 10, "a value after the restart")


def test_status_topic_and_broker_restart_drive_availability(gateway):
    a, srv, broker = gateway
    broker.publish("sensors/th-1/data", json.dumps({"temp": 20}))
    wait_for(lambda: value(srv, "/th-1/3303/0/5700"), 10, "the first message")
    broker.publish("sensors/th-1/status", "offline")
    wait_for(lambda: srv.read(EP, "/th-1/3303/0/5700").code == Code.SERVICE_UNAVAILABLE, 5, "down by its status")
    assert srv.read(EP, "/th-1/3/0/11/0").payload == b"8"
    st = {d["id"]: d for d in a.status_json()["devices"]}
    assert "offline" in st["th-1"]["state"], st
    broker.publish("sensors/th-1/status", "online")
    wait_for(lambda: srv.read(EP, "/th-1/3303/0/5700").code == Code.CONTENT, 5, "up again")
    # Broker gone: every device on it is down with the reason; back: up, and a
    # message published at QoS 1 while lwgate's client was away still arrives.
    broker.publish("fleet/a1/telemetry", json.dumps({"t": 1}))
    wait_for(lambda: value(srv, "/a1/3303/0/5700"), 10, "a found device")
    instances = lambda: sorted(k for k in senml_json(srv.read(EP, "/25", accept=SENML_JSON).payload) if k.endswith("/0"))  # noqa: E731
    before = instances()
    assert len(before) == 2, before
    broker.stop()
    wait_for(lambda: "cannot reach the MQTT broker" in {d["id"]: d for d in a.status_json()["devices"]}["th-1"]["state"], 10, "down with the broker")
    time.sleep(3)  # lwgate's reconnection back-off has grown past a second
    broker.start()
    # Published before lwgate's client is back: the broker keeps it for its
    # persistent session (clean_session = false, subscriptions at QoS 1).
    broker.publish("sensors/th-1/data", json.dumps({"temp": 30.5}), qos=1)
    wait_for(lambda: value(srv, "/th-1/3303/0/5700") == b"30.5", 20, "the message the broker held")
    st = {d["id"]: d for d in a.status_json()["devices"]}
    assert st["th-1"]["state"] == "up", st
    # The found device speaks again after the reconnection: still one /25 instance.
    broker.publish("fleet/a1/telemetry", json.dumps({"t": 2}))
    wait_for(lambda: value(srv, "/a1/3303/0/5700") in (b"0.2", b"0.2000000000000000"), 10, "its new value")
    assert instances() == before


def test_a_flood_on_one_device_does_not_starve_another(gateway):
    a, srv, broker = gateway
    broker.publish("fleet/quiet/telemetry", json.dumps({"t": 10}))
    wait_for(lambda: value(srv, "/quiet/3303/0/5700"), 10, "the quiet device")
    first, notes, cancel = srv.observe(EP, "/quiet/3303/0/5700", accept=SENML_JSON)
    broker.publish_many([("sensors/th-1/data", json.dumps({"temp": i})) for i in range(5000)])
    broker.publish("fleet/quiet/telemetry", json.dumps({"t": 20}))
    srv.wait_for(lambda: any(senml_json(n.payload).get("/quiet/3303/0/5700") == 2.0 for n in notes if not isinstance(n, Exception)), 10, "the quiet device's notification")
    cancel()
    assert a.proc.poll() is None


def test_mqtt_and_serial_values_are_stored_through_an_outage_with_their_own_times(agent):
    """The server observes an MQTT-fed and a serial-fed resource; during an outage
    the values are stored with the times the devices gave them and replayed."""
    import subprocess
    import sys

    from modbus_sim import PtyPair
    from relay import Relay

    broker = Broker()
    srv = TestServer()
    relay = Relay(srv.port)
    pty = PtyPair()
    sim = Path(__file__).parent / "fixtures" / "serial_instrument.py"
    gps = subprocess.Popen([sys.executable, str(sim), pty.sim, "--mode", "nmea", "--rate", "2"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        a = agent(
            extra=f'[lwm2m]\nobject_dirs = ["{ROOT / "objects"}"]\n',
            servers=f'[[server]]\nuri = "{relay.uri}"\nssid = 101\nlifetime = 300\nack_timeout = 1\nmax_retransmit = 1\n',
        )
        (a.devices / "th1.toml").write_text(declared(broker.port))
        example = (ROOT / "etc" / "devices.d" / "nmea-gps.toml.example").read_text()
        (a.devices / "gps.toml").write_text(example.replace("/dev/ttyUSB0", pty.device))
        a.start()
        srv.wait_registered(EP, 15)
        assert srv.write(EP, "/1/0/18", b"1", TEXT).code.is_successful()
        assert srv.write(EP, "/1/0/19", b"2", TEXT).code.is_successful()
        base = 1_700_000_000.0
        broker.publish("sensors/th-1/data", json.dumps({"temp": 1.0, "ts": base}))
        wait_for(lambda: value(srv, "/th-1/3303/0/5700"), 10, "the MQTT value")
        wait_for(lambda: value(srv, "/6/0/5"), 10, "the GPS time")
        _, mqtt_notes, cancel1 = srv.observe(EP, "/th-1/3303/0/5700", accept=SENML_JSON)
        gps_first, gps_notes, cancel2 = srv.observe(EP, "/6/0/5", accept=SENML_JSON)
        at_start = senml_json(gps_first.payload)["/6/0/5"]
        srv.wait_for(lambda: len(relay.notifications) >= 2, 10, "live notifications")
        relay.drop = True
        for i in range(1, 5):
            broker.publish("sensors/th-1/data", json.dumps({"temp": 10.0 + i, "ts": base + 60 * i}))
            time.sleep(1)
        assert a.status_json()["servers"][0]["queued"] >= 4
        relay.drop = False
        srv.wait_for(lambda: a.status_json()["servers"][0]["queued"] == 0 and any(
            json.loads(p)[-1].get("v") == 14.0 for _, p in relay.notifications if p), 30, "the replay")
        mqtt, gps_times = [], []
        for _, p in relay.notifications:
            bt = 0.0
            for r in json.loads(p) if p else []:
                bt = r.get("bt", bt)
                name = r.get("bn", "") + r.get("n", "")
                if name.startswith("/th-1/3303/0/5700") and "v" in r:
                    mqtt.append((bt + r.get("t", 0), r["v"]))
                if name.startswith("/6/0/5") and "v" in r:
                    gps_times.append((bt + r.get("t", 0), r["v"]))
        # Every MQTT value of the outage, in order, with the time its payload gave.
        for i in range(1, 5):
            assert (base + 60 * i, 10.0 + i) in mqtt, mqtt
        # The GPS's notifications carry the fix's own time (its /6/0/5 value).
        # (The Observe's first answer has no time: it is a read, not a notification.
        # The value it read came before the observation: its time is not known to it.)
        gps_times = [(t, v) for t, v in gps_times if t and v != at_start]
        assert gps_times and all(abs(t - v) < 1 for t, v in gps_times), gps_times
        cancel1()
        cancel2()
        a.stop()
    finally:
        gps.kill()
        pty.close()
        relay.close()
        srv.close()
        broker.close()


def test_a_broker_over_tls_with_a_configured_ca(agent):
    import subprocess
    import tempfile

    # Readable by mosquitto, which drops root for its own user.
    tmp_path = Path(tempfile.mkdtemp(prefix="lwgate-mqtt-tls."))
    os.chmod(tmp_path, 0o755)

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ca_key, ca, key, csr, cert = (tmp_path / n for n in ("ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem"))
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(ca_key),
        "-out", str(ca), "-days", "2", "-subj", "/CN=test CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
        "-out", str(csr), "-subj", "/CN=localhost")
    ext = tmp_path / "ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(ext))
    for f in (key, cert, ca):
        os.chmod(f, 0o644)  # mosquitto runs as its own user
    broker = Broker(tls=(str(cert), str(key), str(ca)))
    srv = TestServer()
    try:
        a = agent(
            extra=f'[lwm2m]\nobject_dirs = ["{ROOT / "objects"}"]\n',
            servers=f'[[server]]\nuri = "{srv.uri}"\nssid = 101\nlifetime = 300\n',
        )
        text = declared(broker.port).replace(
            f"port = {broker.port}\n", f'host = "localhost"\nport = {broker.port}\ntls = true\nca_file = "{ca}"\n'
        )
        (a.devices / "th1.toml").write_text(text)
        a.start()
        srv.wait_registered(EP, 15)
        wait_for(lambda: broker.publish("sensors/th-1/data", json.dumps({"temp": 7.5})) or value(srv, "/th-1/3303/0/5700"), 15, "a value over TLS")
        assert float(value(srv, "/th-1/3303/0/5700")) == 7.5
        # Without the CA the broker's certificate is refused, and the device says why.
        a.stop()
        (a.devices / "th1.toml").write_text(text.replace(f'ca_file = "{ca}"\n', ""))
        a.start()
        srv.wait_registered(EP, 15)
        wait_for(lambda: "cannot reach the MQTT broker" in {d["id"]: d for d in a.status_json()["devices"]}["th-1"]["state"], 15, "down: untrusted broker")
        a.stop()
    finally:
        srv.close()
        broker.close()

"""Serial-line instruments behind lwgate as an operator meets them: a simulated
instrument (tests/fixtures/serial_instrument.py) on a socat pty pair, read,
observed and commanded through its prefix at the aiocoap test LwM2M server; an
NMEA GPS receiver filling the gateway's own /6 Location, with broken sentences,
garbage and an overlong line counted and dropped; a silent instrument, a port
that vanishes and comes back, a babbling line beside a quiet one."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiocoap import Code

from conftest import ROOT, wait_for
from lwm2m_formats import links, senml_json
from lwm2m_server import SENML_JSON, TEXT, TestServer
from modbus_sim import PtyPair

EP = "test-gw"
SIM = Path(__file__).parent / "fixtures" / "serial_instrument.py"


class Instrument:
    def __init__(self, pty, *args):
        self.proc = subprocess.Popen(
            [sys.executable, str(SIM), pty.sim, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines = []
        import threading

        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def say(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self):
        self.proc.kill()
        self.proc.wait(10)


def meter_file(tty):
    return f"""
[device]
id = "meter"
protocol = "serial"

[serial]
tty = "{tty}"
baud = 9600
poll = "MEAS?\\r\\n"
poll_ms = 200
reply_timeout_ms = 300
reply_ok = "^OK"
min_interval_ms = 0
reconnect_max_ms = 1000

[[serial.point]]
path = "3303/0/5700"
regex = 'T=(?P<t>-?[0-9.]+)'
capture = "t"
type = "float"

[[serial.point]]
path = "3304/0/5700"
field = 1
split = ";"
regex = 'H=([0-9.]+)'
type = "float"

[[serial.point]]
path = "3311/0/5851"
write = "SET {{value}}\\r\\n"
type = "float"

[[serial.point]]
path = "3303/0/5605"
execute = "RESET\\r\\n"
type = "bool"
"""


@pytest.fixture
def gateway(agent):
    meter_pty, gps_pty = PtyPair(), PtyPair()
    meter = Instrument(meter_pty, "--mode", "rr")
    gps = Instrument(gps_pty, "--mode", "nmea", "--rate", "5", "--faults")
    srv = TestServer()
    a = agent(
        extra=f'[lwm2m]\nobject_dirs = ["{ROOT / "objects"}"]\n',
        servers=f'[[server]]\nuri = "{srv.uri}"\nssid = 101\nlifetime = 300\n',
    )
    (a.devices / "meter.toml").write_text(meter_file(meter_pty.device).replace("field = 1\nsplit = \";\"\n", ""))
    gps_example = (ROOT / "etc" / "devices.d" / "nmea-gps.toml.example").read_text()
    (a.devices / "gps.toml").write_text(gps_example.replace("/dev/ttyUSB0", gps_pty.device))
    a.start()
    srv.wait_registered(EP, 15)
    yield a, srv, meter, gps, meter_pty, gps_pty
    a.stop()
    srv.close()
    for x in (meter, gps, meter_pty, gps_pty):
        x.close()


def value(srv, path):
    r = srv.read(EP, path)
    return r.payload if r.code == Code.CONTENT else None


def test_a_polled_instrument_is_read_and_commanded_through_its_prefix(gateway):
    a, srv, meter, *_ = gateway
    wait_for(lambda: value(srv, "/meter/3303/0/5700"), 10, "the first reply")
    assert float(value(srv, "/meter/3303/0/5700")) == 21.5
    assert float(value(srv, "/meter/3304/0/5700")) == 40.0
    meter.say("set T 23.25")
    wait_for(lambda: value(srv, "/meter/3303/0/5700") == b"23.25", 5, "the new value")
    # A write becomes its command; the reply pattern decides.
    r = srv.write(EP, "/meter/3311/0/5851", b"3", TEXT)
    assert r.code == Code.CHANGED, (r.code, r.payload)
    # The simulator logs what it received on a pipe its reader thread reads later.
    wait_for(lambda: "RX SET 3" in meter.lines, 5, "the command at the instrument")
    r = srv.write(EP, "/meter/3311/0/5851", b"9", TEXT)
    assert r.code == Code.INTERNAL_SERVER_ERROR and b"ERR" in r.payload, (r.code, r.payload)
    assert srv.execute(EP, "/meter/3303/0/5605").code == Code.CHANGED
    wait_for(lambda: "RX RESET" in meter.lines, 5, "the reset at the instrument")
    # Read-only resource.
    assert srv.write(EP, "/meter/3303/0/5700", b"1", TEXT).code == Code.METHOD_NOT_ALLOWED


def test_a_gps_fills_the_gateways_location_and_broken_sentences_are_dropped(gateway):
    a, srv, *_ = gateway
    # GGA and RMC: a second or two (the file takes at most one update a second).
    wait_for(lambda: value(srv, "/6/0/0") and value(srv, "/6/0/6"), 10, "a position and a speed")
    assert abs(float(value(srv, "/6/0/0")) - 48.1173) < 1e-3
    assert abs(float(value(srv, "/6/0/1")) - 11.516667) < 1e-3
    assert float(value(srv, "/6/0/2")) == 545.4
    assert abs(float(value(srv, "/6/0/6")) - 22.4 * 0.514444) < 1e-3
    ts = int(value(srv, "/6/0/5"))
    assert 1_796_292_000 <= ts < 1_796_292_000 + 3600, ts
    wait_for(lambda: "</6/0>" in srv.registrations[EP].links or "/6/0" in dict(links(srv.registrations[EP].links)), 10, "/6 in the Registration")
    st = {d["id"]: d for d in a.status_json()["devices"]}
    assert st["gps"]["instance"] is None and st["gps"]["state"] == "up", st
    wait_for(lambda: {d["id"]: d for d in a.status_json()["devices"]}["gps"]["errors"] >= 3, 10, "the broken frames counted")
    assert a.proc.poll() is None


def test_silence_and_a_vanishing_port_are_reported_and_recovered(gateway):
    a, srv, meter, gps, meter_pty, gps_pty = gateway
    wait_for(lambda: value(srv, "/meter/3303/0/5700"), 10, "the first reply")
    meter.say("silent")
    wait_for(lambda: srv.read(EP, "/meter/3303/0/5700").code == Code.SERVICE_UNAVAILABLE, 5, "down when silent")
    st = {d["id"]: d for d in a.status_json()["devices"]}
    assert "no reply to \"MEAS?\"" in st["meter"]["state"], st
    assert srv.read(EP, "/meter/3/0/11/0").payload == b"8"
    meter.say("resume")
    wait_for(lambda: srv.read(EP, "/meter/3303/0/5700").code == Code.CONTENT, 5, "up again")
    # The port vanishes (the cable is pulled) and comes back at the same path.
    meter.close()
    meter_pty.close()
    wait_for(lambda: "down" in {d["id"]: d for d in a.status_json()["devices"]}["meter"]["state"], 10, "down without its port")
    fresh = PtyPair.__new__(PtyPair)
    fresh.dir, fresh.device, fresh.sim = meter_pty.dir, meter_pty.device, meter_pty.sim
    fresh.proc = subprocess.Popen(
        ["socat", f"pty,raw,echo=0,link={fresh.device}", f"pty,raw,echo=0,link={fresh.sim}"],
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: os.path.exists(fresh.sim), 5, "the new pty")
    back = Instrument(fresh, "--mode", "rr")
    try:
        wait_for(lambda: {d["id"]: d for d in a.status_json()["devices"]}["meter"]["state"] == "up", 15, "reopened")
    finally:
        back.close()
        fresh.close()


def test_a_babbling_line_does_not_stall_another_device(gateway):
    a, srv, meter, gps, *_ = gateway
    wait_for(lambda: value(srv, "/meter/3303/0/5700"), 10, "the first reply")
    first, notes, cancel = srv.observe(EP, "/meter/3303/0/5700", accept=SENML_JSON)
    gps.say("babble")
    meter.say("set T 30")
    srv.wait_for(lambda: any(senml_json(n.payload).get("/meter/3303/0/5700") == 30 for n in notes if not isinstance(n, Exception)), 5, "the meter's notification during the babble")
    cancel()
    assert a.proc.poll() is None
